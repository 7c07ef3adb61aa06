import Foundation
import VLModels

/// Writes a model directory that is `base` with new weights (`vlseg export`, `vlseg lora merge`).
enum ModelDirectoryOutput {
    /// Puts `weights` as `model.safetensors` beside copies of every other file of `base` (configs,
    /// tokenizer, processor; not its weights, in whichever forms it has them), in a temporary sibling moved into place at the end: a failure leaves no
    /// half-written model. `out` must be missing or empty (the commands check it first).
    static func write(_ weights: SafeTensorsWriter, replacingWeightsOf base: URL, into out: URL) throws {
        let fm = FileManager.default
        let staging = out.deletingLastPathComponent().appendingPathComponent(
            ".\(out.lastPathComponent).tmp-\(getpid())")
        try? fm.removeItem(at: staging)
        try fm.createDirectory(at: staging, withIntermediateDirectories: true)
        do {
            try weights.write(to: staging.appendingPathComponent("model.safetensors"))
            let baseWeights = ModelWeights.weightFileNames(in: base)
            for item in try fm.contentsOfDirectory(atPath: base.path) where !baseWeights.contains(item) {
                // Resolved: Hugging Face cache snapshots hold relative links into a blob store,
                // which would dangle at the new place.
                let src = base.appendingPathComponent(item).resolvingSymlinksInPath()
                var isDirectory: ObjCBool = false
                guard fm.fileExists(atPath: src.path, isDirectory: &isDirectory), !isDirectory.boolValue else {
                    continue
                }
                try fm.copyItem(at: src, to: staging.appendingPathComponent(item))
            }
            if fm.fileExists(atPath: out.path) { try fm.removeItem(at: out) }  // empty, checked by the caller
            try fm.moveItem(at: staging, to: out)
        } catch {
            try? fm.removeItem(at: staging)
            throw error
        }
    }
}
