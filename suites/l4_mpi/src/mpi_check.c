/*
 * mpi_check: the MPI program the L4 suites compile on the cluster at run time.
 *
 *   mpi_check ranks              every rank prints "RANK <r> OF <n> ON <host>";
 *                                rank 0 then prints "ALLREDUCE <sum> EXPECTED <n(n+1)/2>"
 *   mpi_check pingpong [iters]   ranks 0 and 1 exchange 8 B and 1 MiB messages; rank 0 prints
 *                                "LATENCY_US <half round trip, 8 B>" and
 *                                "BANDWIDTH_MIBPS <1 MiB messages, one direction>"
 *
 * Output lines are parsed by pytest_hpcvalidate.probes.mpi; keep their format stable.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int ranks(void) {
    int rank, size, len;
    char host[MPI_MAX_PROCESSOR_NAME];
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Get_processor_name(host, &len);
    printf("RANK %d OF %d ON %s\n", rank, size, host);
    fflush(stdout);
    long mine = rank + 1, sum = 0;
    MPI_Allreduce(&mine, &sum, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) {
        printf("ALLREDUCE %ld EXPECTED %ld\n", sum, (long)size * (size + 1) / 2);
        fflush(stdout);
    }
    return 0;
}

static double exchange(int rank, char *buf, int bytes, int iters) {
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    for (int i = 0; i < iters; i++) {
        if (rank == 0) {
            MPI_Send(buf, bytes, MPI_CHAR, 1, 0, MPI_COMM_WORLD);
            MPI_Recv(buf, bytes, MPI_CHAR, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else if (rank == 1) {
            MPI_Recv(buf, bytes, MPI_CHAR, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(buf, bytes, MPI_CHAR, 0, 0, MPI_COMM_WORLD);
        }
    }
    return (MPI_Wtime() - t0) / iters / 2.0; /* one direction */
}

static int pingpong(int iters) {
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size < 2) {
        if (rank == 0) fprintf(stderr, "pingpong needs 2 ranks, got %d\n", size);
        return 2;
    }
    const int big = 1 << 20;
    char *buf = calloc(1, big);
    exchange(rank, buf, 8, 10); /* warm up */
    double lat = exchange(rank, buf, 8, iters);
    int big_iters = iters / 10 > 5 ? iters / 10 : 5;
    double t = exchange(rank, buf, big, big_iters);
    if (rank == 0) {
        printf("LATENCY_US %.3f\n", lat * 1e6);
        printf("BANDWIDTH_MIBPS %.1f\n", 1.0 / t);
        fflush(stdout);
    }
    free(buf);
    return 0;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rc = 2;
    if (argc >= 2 && strcmp(argv[1], "ranks") == 0)
        rc = ranks();
    else if (argc >= 2 && strcmp(argv[1], "pingpong") == 0)
        rc = pingpong(argc >= 3 ? atoi(argv[2]) : 1000);
    else
        fprintf(stderr, "usage: mpi_check ranks | pingpong [iterations]\n");
    MPI_Finalize();
    return rc;
}
