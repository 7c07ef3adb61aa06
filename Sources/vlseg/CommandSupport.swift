import ArgumentParser
import Foundation
import VLDistributed
import VLTensor

/// Runs a command body and ends the process the same way on any rank count.
///
/// - A clean end, or an agreed stop (`ExitCode`, which every rank throws at the same point):
///   the job's communicator is finalized on every rank.
/// - An `AgreedFailure` (rank 0's broadcast error, raised on every rank together): rank 0 prints
///   it once; all ranks finalize and exit 1.
/// - Any other error is this rank's own: one line naming it (with rank and host under a launcher),
///   then the whole job ends (`Communicator.fail`: MPI_Abort, never MPI_Finalize, which the peers of a
///   failed rank would never reach). Never a trace, never a hang.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
        Communicators.finishCurrent()
    } catch let exit as ExitCode {
        Communicators.finishCurrent()
        throw exit
    } catch let error as ValidationError {
        throw error
    } catch let agreed as AgreedFailure {
        if Communicators.current?.isRoot ?? true { printError("vlseg: error: \(agreed.message)") }
        Communicators.finishCurrent()
        throw ExitCode(1)
    } catch {
        if let comm = Communicators.current { comm.fail(message: "\(error)") }
        let prefix = ProcessIdentity.rankLabel.map { "\($0): " } ?? ""
        printError("vlseg: error: \(prefix)\(error)")
        throw ExitCode(1)
    }
}

/// Prints to stderr (progress and diagnostics keep stdout clean for results).
/// Prints `object` as one line of JSON with sorted keys (the `--json` result line of a command).
func printJSONLine(_ object: [String: Any]) throws {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

/// Thread options shared by commands that compute.
extension MatmulPrecision: ExpressibleByArgument {}

/// `--precision` for the commands that run a model or an op outside a config (benches, `forward`).
struct PrecisionOption: ParsableArguments {
    @Option(
        help:
            "Input format of the matrix products (linear layers, the decoder MLP, wide attention heads, convolutions): fp32, or bf16 (bfloat16 inputs, float32 sums; CPUs with AVX512_BF16)."
    )
    var precision: MatmulPrecision = .fp32

    /// Makes it the process-wide setting (an error when bf16 cannot run here).
    func apply() throws { try MatmulPrecision.set(precision) }
}

struct ThreadOptions: ParsableArguments {
    @Option(help: "Threads per rank for OpenBLAS and the engine's loops (default: cores / ranks on this machine).")
    var threads: Int?

    func apply() {
        ComputeThreads.set(threads ?? ComputeThreads.defaultCount(for: LaunchPlacement.fromEnvironment().localSize))
    }
}
