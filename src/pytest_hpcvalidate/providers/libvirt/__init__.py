"""The libvirt provider: real VMs (KVM where it can be trusted, TCG otherwise) from the config.

libvirt-python is imported only when a cluster is provisioned or cleaned up, so the rest of
the plugin works without it.
"""

from .provider import LibvirtCluster, LibvirtProvider

__all__ = ["LibvirtCluster", "LibvirtProvider"]
