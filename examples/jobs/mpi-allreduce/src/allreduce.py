"""Every rank contributes rank + 1 to an allreduce; rank 0 checks the sum
against n(n+1)/2. Run with process_count_per_instance 1 or more: the world
is whatever mpirun made."""
import os
import socket
import sys

from mpi4py import MPI


def main():
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    print(f"rank {rank} of {size} on {socket.gethostname()} "
          f"(local rank {os.environ.get('OMPI_COMM_WORLD_LOCAL_RANK')}, {os.environ.get('AZUREML_PROCESS_NAME')})", flush=True)
    total = comm.allreduce(rank + 1, op=MPI.SUM)
    if rank == 0:
        want = size * (size + 1) // 2
        print(f"allreduce sum: {total} (expected {want})", flush=True)
        if total != want:
            print("allreduce sum is wrong", file=sys.stderr, flush=True)
            return 1
    comm.Barrier()
    return 0


if __name__ == "__main__":
    sys.exit(main())
