import ArgumentParser
import Foundation
import VLModels
import VLTrain

/// `vlseg checkpoint inspect`: what a checkpoint holds, and whether it is intact.
struct CheckpointCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint", abstract: "Work with checkpoints.", subcommands: [Inspect.self])

    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "inspect",
            abstract:
                "Show a checkpoint: step, epoch, method, metrics, trainable tensors, config; verifies its checksums.")

        @Argument(help: "A checkpoint directory, or a run directory (then its latest checkpoint).")
        var path: String

        @Flag(help: "Print one JSON object.")
        var json = false

        @Flag(help: "List every trainable tensor.")
        var tensors = false

        func run() throws {
            try reportingErrors {
                var url = URL(fileURLWithPath: path)
                let store = CheckpointStore(runDirectory: url)
                if !FileManager.default.fileExists(atPath: url.appendingPathComponent(CheckpointStore.stateFile).path),
                    let latest = store.pointer("latest")
                {
                    url = store.directory.appendingPathComponent(latest)
                }
                let ckpt = try CheckpointStore.load(url)
                let s = ckpt.state
                let names = ckpt.trainable.names
                var total = 0
                var rows: [(String, [Int])] = []
                for n in names {
                    let e = try ckpt.trainable.entry(n)
                    total += e.elementCount
                    rows.append((n, e.shape))
                }
                if json {
                    let obj: [String: Any] = [
                        "path": url.path, "step": s.step, "epoch": s.epoch, "samples_into_epoch": s.samplesIntoEpoch,
                        "method": s.method, "best_dice": s.bestDice as Any, "best_step": s.bestStep as Any,
                        "world_size": s.worldSize, "batch_size": s.batchSize, "accumulate": s.accumulate,
                        "optimizer_step": s.optimizer.step, "config_hash": s.configHash, "trainable_parameters": total,
                        "tensors": Dictionary(uniqueKeysWithValues: rows.map { ($0.0, $0.1) }),
                        "checksums": s.checksums,
                    ]
                    let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .prettyPrinted])
                    print(String(decoding: data, as: UTF8.self))
                    return
                }
                print("checkpoint \(url.path) (checksums verified)")
                print(
                    "  step \(s.step), epoch \(s.epoch) (\(s.samplesIntoEpoch) samples into it), optimiser step \(s.optimizer.step)"
                )
                print("  method \(s.method): \(names.count) trainable tensors, \(total.grouped) parameters")
                print(
                    "  trained on \(s.worldSize) rank(s) x batch \(s.batchSize) x accumulate \(s.accumulate) = global batch \(s.globalBatch)"
                )
                if let d = s.bestDice, let b = s.bestStep {
                    print(String(format: "  best validation Dice so far %.4f at step %d", d, b))
                }
                print(
                    "  learning rate now \(s.schedule.rate(at: s.step)) (\(s.schedule.kind.rawValue)); early stopping: \(s.earlyStopping.evaluationsWithoutImprovement) evaluation(s) without improvement"
                )
                print("  config hash \(s.configHash)")
                if tensors { for (n, shape) in rows { print("    \(n) \(shape)") } }
                let configLines = ckpt.configYAML.split(separator: "\n")
                if let model = configLines.first(where: { $0.hasPrefix("  path:") }) {
                    print("  model\(model.dropFirst(1))")
                }
            }
        }
    }
}
