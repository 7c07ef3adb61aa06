import ArgumentParser
import Foundation
import VLDistributed
import VLTensor

/// Runs a command body; any error becomes one line on stderr and exit status 1 (no trace).
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let exit as ExitCode {
        throw exit
    } catch let error as ValidationError {
        throw error
    } catch {
        FileHandle.standardError.write(Data("vlseg: error: \(error)\n".utf8))
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
    @Option(help: "Input format of the matrix products (linear layers, the decoder MLP, wide attention heads, convolutions): fp32, or bf16 (bfloat16 inputs, float32 sums; CPUs with AVX512_BF16).")
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
