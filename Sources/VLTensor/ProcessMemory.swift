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
