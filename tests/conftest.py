import signal

pytest_plugins = ["pytester"]


def pytest_configure(config):
    # A shell that starts this run in the background (`cmd &` in a script, nohup, some CI
    # runners) hands it SIGINT ignored, and every process it starts inherits that: the Ctrl-C
    # tests would then interrupt nothing. Ctrl-C is what they test, so restore it here; the
    # handler (not SIG_IGN) is what a child inherits as SIG_DFL across exec.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
