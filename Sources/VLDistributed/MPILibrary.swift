import CMPI
import Foundation

/// Facts about the MPI library and this process's place in an MPI job, available before (and
/// without) `MPI_Init`: the launcher publishes rank and size in the environment.
public enum MPILibrary {
    /// The library's own version string (e.g. "Open MPI v4.1.4, ...").
    public static var versionString: String {
        var buffer = [CChar](repeating: 0, count: Int(vlseg_mpi_max_library_version_string()) + 1)
        var length: Int32 = 0
        let rc = buffer.withUnsafeMutableBufferPointer { MPI_Get_library_version($0.baseAddress, &length) }
        guard rc == vlseg_mpi_success() else { return "unknown" }
        let text = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return text.split(separator: "\n").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? text
    }

    /// The MPI standard version the library implements.
    public static var standardVersion: String {
        var major: Int32 = 0, minor: Int32 = 0
        MPI_Get_version(&major, &minor)
        return "\(major).\(minor)"
    }
}

/// Where this process sits in a launch, read from the launcher's environment variables.
public struct LaunchPlacement: Sendable, Equatable {
    public let rank: Int
    public let size: Int
    public let localRank: Int
    public let localSize: Int
    /// True when started by mpirun/mpiexec (Open MPI) or a PMIx/Slurm launcher.
    public let underLauncher: Bool

    /// Reads Open MPI's (then PMIx's, then Slurm's) variables; a plain process is rank 0 of 1.
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) -> LaunchPlacement
    {
        func int(_ key: String) -> Int? { env[key].flatMap { Int($0) } }
        if let rank = int("OMPI_COMM_WORLD_RANK"), let size = int("OMPI_COMM_WORLD_SIZE") {
            return LaunchPlacement(
                rank: rank, size: size,
                localRank: int("OMPI_COMM_WORLD_LOCAL_RANK") ?? 0,
                localSize: int("OMPI_COMM_WORLD_LOCAL_SIZE") ?? 1, underLauncher: true)
        }
        if let rank = int("PMIX_RANK"), let size = int("PMIX_SIZE") ?? int("SLURM_NTASKS") {
            return LaunchPlacement(
                rank: rank, size: size, localRank: int("SLURM_LOCALID") ?? 0,
                localSize: int("SLURM_NTASKS_PER_NODE") ?? 1, underLauncher: true)
        }
        return LaunchPlacement(rank: 0, size: 1, localRank: 0, localSize: 1, underLauncher: false)
    }

    public init(rank: Int, size: Int, localRank: Int, localSize: Int, underLauncher: Bool) {
        self.rank = rank
        self.size = size
        self.localRank = localRank
        self.localSize = localSize
        self.underLauncher = underLauncher
    }
}
