import ArgumentParser
import VLTensor

// OpenBLAS picks its kernels when it loads: fix a misdetected core before anything else runs.
BLASKernelSelection.reexecIfMisdetected()
ProcessMemory.keepFreedMemoryForReuse()
VLSeg.main()
