import ArgumentParser
import Foundation
import VLData
import VLDistributed
import VLTensor

/// `vlseg env`: what this process runs on, for bug reports and for checking a cluster's nodes.
struct EnvCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "env", abstract: "Print version, BLAS kernels, threads, MPI and CPU features.")

    @Option(help: "Threads per rank (OpenBLAS and the engine's loops).")
    var threads: Int?

    func run() throws {
        let placement = LaunchPlacement.fromEnvironment()
        let cpu = CPUFeatures.current()
        ComputeThreads.set(threads ?? ComputeThreads.defaultCount(for: placement.localSize))
        let env = ProcessInfo.processInfo.environment
        let coretypeSource: String
        let setByVLSeg = (env[BLASKernelSelection.reexecMarker] ?? "").split(separator: ",").map(String.init)
        if setByVLSeg.contains("OPENBLAS_CORETYPE") {
            coretypeSource = "set by vlseg (OpenBLAS detected a weaker core)"
        } else if let forced = env["OPENBLAS_CORETYPE"] {
            coretypeSource = "OPENBLAS_CORETYPE=\(forced) from the environment"
        } else {
            coretypeSource = "detected by OpenBLAS"
        }
        var lines: [(String, String)] = [
            ("vlseg", VLSeg.versionLine),
            ("blas", "OpenBLAS \(BLAS.configuration)"),
            ("blas core", "\(BLAS.coreName) (\(coretypeSource))"),
            (
                "blas thread timeout",
                env[BLASKernelSelection.threadTimeoutVariable].map {
                    "\($0) (\(setByVLSeg.contains(BLASKernelSelection.threadTimeoutVariable) ? "set by vlseg: idle OpenBLAS threads sleep instead of spinning" : "from the environment"))"
                } ?? "OpenBLAS default (idle threads spin)"
            ),
            (
                "narrow products",
                PanelGEMM.enabled
                    ? "AVX-512 panel kernel (VLSEG_PANEL_GEMM=off: OpenBLAS)"
                    : env["VLSEG_PANEL_GEMM"] == "off"
                        ? "OpenBLAS (VLSEG_PANEL_GEMM=off)" : "OpenBLAS (no AVX-512 on this CPU)"
            ),
            (
                "bf16 products",
                BF16GEMM.available
                    ? "AVX512_BF16 kernel (used with trainer.precision=bf16 or --precision bf16)"
                    : "unavailable: \(MatmulPrecision.bf16Unavailable ?? ""); trainer.precision must stay fp32"
            ),
            (
                "threads",
                "\(ComputeThreads.count) per rank (OpenBLAS \(BLAS.threads)), \(ComputeThreads.availableCores) cores available"
            ),
            ("mpi", "\(MPILibrary.versionString) (MPI \(MPILibrary.standardVersion))"),
        ]
        if placement.underLauncher {
            lines.append(
                (
                    "rank",
                    "\(placement.rank) of \(placement.size) (local \(placement.localRank) of \(placement.localSize))"
                ))
        } else {
            lines.append(("rank", "0 of 1 (no MPI launcher)"))
        }
        lines.append(("cpu", cpu.modelName))
        lines.append(("cpu features", cpu.vectorSummary))
        lines.append(("libpng", NativeCodecs.pngVersion))
        lines.append(("turbojpeg", NativeCodecs.turboJPEGAvailable ? "available" : "not working"))
        let width = lines.map(\.0.count).max() ?? 0
        for (k, v) in lines {
            print("\(k.padding(toLength: width, withPad: " ", startingAt: 0))  \(v)")
        }
    }
}
