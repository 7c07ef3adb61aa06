import Foundation

/// Memory figures of this process (Linux), for benchmarks.
public enum ProcessMemory {
    /// Peak resident set size in MB (getrusage).
    public static var peakRSSMB: Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_maxrss) / 1024
    }

    /// Proportional set size in MB (/proc/self/smaps_rollup): shared pages, such as memory-mapped
    /// frozen weights used by several ranks, count once in total across the processes sharing them.
    public static var pssMB: Double {
        guard let text = try? String(contentsOfFile: "/proc/self/smaps_rollup", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("Pss:") {
            let kb = line.split(separator: " ").compactMap { Double($0) }.first ?? 0
            return kb / 1024
        }
        return 0
    }

    /// Current resident set size in MB.
    public static var rssMB: Double {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return (line.split(separator: " ").compactMap { Double($0) }.first ?? 0) / 1024
        }
        return 0
    }
}

extension ProcessMemory {
    /// Keeps freed activation buffers in the heap for reuse instead of returning them to the OS.
    ///
    /// A training step allocates and frees the same large buffers (activations, gradients) every
    /// step. With glibc's defaults each one above the mmap threshold is a fresh mapping whose
    /// pages fault in, zero-filled, on first touch; raising the thresholds makes step N+1 reuse
    /// step N's memory. Call once at start-up, before any threads.
    public static func keepFreedMemoryForReuse() {
        #if os(Linux)
            // glibc's mallopt (malloc.h is not part of the Glibc module): M_TRIM_THRESHOLD = -1,
            // M_MMAP_THRESHOLD = -3.
            typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
            guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
            let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
            _ = mallopt(-3, 512 << 20)
            _ = mallopt(-1, 1 << 30)
        #endif
    }
}
