"""Know the machine: hardware discovery (CPUs, NUMA, L3 groups, memory, GPUs, disks) read
through a root path so a captured tree stands in for the live machine, the worker and prover
config planner, and the checker of a worker config against the machine. See docs/hardware.md."""
