import Foundation

/// What the processor can execute, read from /proc/cpuinfo (Linux).
public struct CPUFeatures: Sendable {
    public let modelName: String
    public let flags: Set<String>

    public init(modelName: String, flags: Set<String>) {
        self.modelName = modelName
        self.flags = flags
    }

    /// Reads the running machine's features; empty when /proc/cpuinfo is unavailable.
    public static func current() -> CPUFeatures {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else {
            return CPUFeatures(modelName: "unknown", flags: [])
        }
        return parse(cpuinfo: text)
    }

    /// Parses the first processor block of a /proc/cpuinfo text.
    public static func parse(cpuinfo: String) -> CPUFeatures {
        var model = "unknown"
        var flags = Set<String>()
        for line in cpuinfo.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon].trimmingCharacters(in: .whitespaces)
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            if key == "model name", model == "unknown" { model = value }
            if key == "flags", flags.isEmpty { flags = Set(value.split(separator: " ").map(String.init)) }
        }
        return CPUFeatures(modelName: model, flags: flags)
    }

    public var hasAVX512: Bool {
        ["avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"].allSatisfy(flags.contains)
    }
    public var hasAVX2: Bool { flags.contains("avx2") && flags.contains("fma") }
    public var hasAVX: Bool { flags.contains("avx") }

    /// The vector extensions worth reporting, in order of width.
    public var vectorSummary: String {
        let names = [
            "sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "amx_tile",
        ]
        return names.filter(flags.contains).joined(separator: " ")
    }
}

/// Chooses OpenBLAS kernels that match the CPU, and how its idle threads wait.
///
/// Debian's OpenBLAS 0.3.21 misdetects several recent processors (recent Xeons come out as
/// "Prescott") and then runs sgemm 3-10x slower. And after each GEMM its worker threads spin
/// (sched_yield in a loop) for 2^28 cycles before sleeping, competing for the cores with the
/// engine's own parallel loops that run between GEMMs; `OPENBLAS_THREAD_TIMEOUT=4` makes them sleep
/// at once (measured on 2 cores: decoder-only training from cached features 21.9 -> 27.5 images/s,
/// inference 2.06 -> 2.30). Both are read when the library loads, so they must be in the environment
/// before the process starts: `vlseg` re-executes itself once with whatever is missing set.
public enum BLASKernelSelection {
    /// Environment marker that prevents a second re-exec; its value lists what vlseg set.
    public static let reexecMarker = "VLSEG_BLAS_REEXEC"
    public static let threadTimeoutVariable = "OPENBLAS_THREAD_TIMEOUT"
    /// 2^4 cycles of spinning: idle OpenBLAS threads sleep almost at once.
    public static let threadTimeout = "4"

    /// Vector capability level of an OpenBLAS core name: 3 AVX-512, 2 AVX2, 1 AVX, 0 older.
    public static func level(ofCore name: String) -> Int {
        switch name.lowercased() {
        case "skylakex", "cooperlake", "sapphirerapids": return 3
        case "haswell", "zen", "skylake": return 2
        case "sandybridge", "bulldozer", "piledriver", "steamroller", "excavator": return 1
        default: return 0
        }
    }

    /// The best core this OpenBLAS offers for the CPU, or nil when nothing beats the baseline.
    public static func bestCore(for cpu: CPUFeatures) -> String? {
        if cpu.hasAVX512 { return cpu.flags.contains("avx512_bf16") ? "Cooperlake" : "SkylakeX" }
        if cpu.hasAVX2 { return "Haswell" }
        if cpu.hasAVX { return "Sandybridge" }
        return nil
    }

    /// The core to force, or nil when the detected one already matches the CPU.
    public static func correction(detectedCore: String, cpu: CPUFeatures) -> String? {
        guard let best = bestCore(for: cpu) else { return nil }
        return level(ofCore: detectedCore) < level(ofCore: best) ? best : nil
    }

    /// What vlseg sets before OpenBLAS loads: the core when OpenBLAS picked kernels weaker than the
    /// CPU supports, and the thread timeout; values already in the environment are respected.
    public static func environmentChanges(_ env: [String: String], cpu: CPUFeatures, detectedCore: String) -> [(
        String, String
    )] {
        var changes: [(String, String)] = []
        if env["OPENBLAS_CORETYPE"] == nil, let core = correction(detectedCore: detectedCore, cpu: cpu) {
            changes.append(("OPENBLAS_CORETYPE", core))
        }
        if env[threadTimeoutVariable] == nil { changes.append((threadTimeoutVariable, threadTimeout)) }
        return changes
    }

    /// Re-executes the current program once with `environmentChanges` applied. Returns (only) when
    /// nothing needs changing or the re-exec is impossible. Must run before MPI is initialised or
    /// any thread is started.
    public static func reexecIfMisdetected() {
        let env = ProcessInfo.processInfo.environment
        if env[reexecMarker] != nil { return }
        // VLSEG_BLAS_ASSUME_DETECTED pretends OpenBLAS chose that core, so the re-exec path can be
        // exercised on machines that OpenBLAS detects correctly.
        let detected = env["VLSEG_BLAS_ASSUME_DETECTED"] ?? BLAS.coreName
        let changes = environmentChanges(env, cpu: .current(), detectedCore: detected)
        if changes.isEmpty { return }
        for (name, value) in changes { setenv(name, value, 1) }
        setenv(reexecMarker, changes.map(\.0).joined(separator: ","), 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // execv returned: it failed. Carry on as loaded rather than not at all.
        let what = changes.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
        FileHandle.standardError.write(
            Data(
                "vlseg: warning: could not re-execute with \(what) (errno \(errno)); BLAS runs the \(BLAS.coreName) kernels\n"
                    .utf8))
    }
}
