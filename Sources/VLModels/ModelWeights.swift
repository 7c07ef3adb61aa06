import Foundation
import VLTensor

/// Named float tensors, wherever they are stored: what a model load needs from a weights file.
public protocol WeightSource: AnyObject {
    /// What messages name: the file, or the index of a sharded set.
    var path: String { get }
    /// Tensor names in a stable order.
    var names: [String] { get }
    func contains(_ name: String) -> Bool
    func shape(of name: String) throws -> [Int]
    /// The tensor as float32 (converted from fp16/bf16/fp64 where the file stores those).
    func tensor(_ name: String) throws -> Tensor
}

extension SafeTensorsFile: WeightSource {
    public func shape(of name: String) throws -> [Int] { try entry(name).shape }
}

/// A model directory's weights in each form Hugging Face publishes, looked for in this order:
/// `model.safetensors`; sharded safetensors (`model.safetensors.index.json` and its shards); the
/// PyTorch `pytorch_model.bin` (zip or legacy), read by the restricted unpickler, so no code in the
/// file runs. Safetensors are memory-mapped (float32 tensors shared between ranks, zero copy); a
/// `.bin` is converted into private memory once per process.
public enum ModelWeights {
    public static let safetensorsFile = "model.safetensors"
    public static let shardIndexFile = "model.safetensors.index.json"
    public static let pytorchFile = "pytorch_model.bin"
    /// The forms in the order they are preferred.
    public static let fileNames = [safetensorsFile, shardIndexFile, pytorchFile]

    /// The file that holds (or indexes) `directory`'s weights, nil when it has none of the forms.
    public static func file(in directory: URL) -> URL? {
        fileNames.lazy.map { directory.appendingPathComponent($0) }.first {
            FileManager.default.fileExists(atPath: $0.path)
        }
    }

    public static func exist(in directory: URL) -> Bool { file(in: directory) != nil }

    /// The files of `directory` that hold weights in any framework's form (the ones read here, shards,
    /// and the TensorFlow/Flax files published beside them): what a derived model directory, whose
    /// weights are written anew, must not copy.
    public static func weightFileNames(in directory: URL) -> Set<String> {
        let items = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        let others: Set<String> = ["pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack"]
        return Set(
            items.filter { item in
                if fileNames.contains(item) || others.contains(item) { return true }
                // model-00001-of-00002.safetensors, pytorch_model-00001-of-00002.bin
                let parts = item.split(separator: "-")
                guard parts.count == 4, parts[2] == "of", ["model", "pytorch_model"].contains(String(parts[0])),
                    parts[1].allSatisfy(\.isNumber)
                else { return false }
                return item.hasSuffix(".safetensors") || item.hasSuffix(".bin")
            })
    }

    /// Opens the weights of a model directory.
    public static func open(directory: URL) throws -> WeightSource {
        guard let url = file(in: directory) else {
            throw ModelLoadError.missingWeights(directory: directory.path, lookedFor: fileNames)
        }
        switch url.lastPathComponent {
        case safetensorsFile: return try SafeTensorsFile(url: url)
        case shardIndexFile: return try ShardedSafeTensors(index: url)
        default: return try TorchWeightFile(url: url)
        }
    }
}

/// Sharded safetensors: `model.safetensors.index.json` maps each tensor name to the shard file that
/// holds it (`{"metadata": {...}, "weight_map": {"name": "model-00001-of-00002.safetensors"}}`).
///
/// Every shard is opened and every mapping checked before a tensor is read, so a missing shard or an
/// index that does not match its shards is an error naming the file and tensor, not a late failure.
/// Shard names must be plain file names in the index's directory.
// @unchecked Sendable: immutable after init; the shards are themselves read-only.
public final class ShardedSafeTensors: WeightSource, @unchecked Sendable {
    public let path: String
    public let names: [String]
    private let shardOf: [String: SafeTensorsFile]

    public init(index url: URL) throws {
        path = url.path
        func bad(_ reason: String) -> ModelLoadError { .invalidShardIndex(file: url.path, reason: reason) }
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw ModelLoadError.missingFile(path: url.path)
        }
        guard let object = try? JSONSerialization.jsonObject(with: data), let top = object as? [String: Any] else {
            throw bad("not a JSON object")
        }
        guard let map = top["weight_map"] as? [String: Any] else { throw bad("no \"weight_map\" object") }
        guard !map.isEmpty else { throw bad("\"weight_map\" is empty") }
        var shardNames: [String: String] = [:]
        for (tensor, value) in map {
            guard let shard = value as? String else { throw bad("the shard of '\(tensor)' is not a string") }
            guard !shard.isEmpty, !shard.contains("/"), shard != ".", shard != ".." else {
                throw bad("shard '\(shard)' of '\(tensor)' is not a file name in the index's directory")
            }
            shardNames[tensor] = shard
        }
        let directory = url.deletingLastPathComponent()
        var files: [String: SafeTensorsFile] = [:]
        for shard in Set(shardNames.values).sorted() {
            let shardURL = directory.appendingPathComponent(shard)
            guard FileManager.default.fileExists(atPath: shardURL.path) else {
                throw bad("its shard \(shard) is not in the directory")
            }
            files[shard] = try SafeTensorsFile(url: shardURL)
        }
        var shardOf: [String: SafeTensorsFile] = [:]
        for (tensor, shard) in shardNames {
            guard let file = files[shard], file.contains(tensor) else {
                throw bad("it maps '\(tensor)' to \(shard), which does not hold it")
            }
            shardOf[tensor] = file
        }
        self.shardOf = shardOf
        // Shards in name order (model-00001-of-0000n first), each in its file order.
        names = files.sorted { $0.key < $1.key }.flatMap { shard, file in file.names.filter { shardNames[$0] == shard }
        }
    }

    public func contains(_ name: String) -> Bool { shardOf[name] != nil }

    private func shard(_ name: String) throws -> SafeTensorsFile {
        guard let file = shardOf[name] else { throw SafeTensorsError.missingTensor(path: path, tensor: name) }
        return file
    }

    public func shape(of name: String) throws -> [Int] { try shard(name).entry(name).shape }
    public func tensor(_ name: String) throws -> Tensor { try shard(name).tensor(name) }
}

/// A `pytorch_model.bin` state dict, read without running its pickle code (the restricted reader refuses
/// any global outside the tensor-rebuilding ones). Float tensors of any precision become float32.
// @unchecked Sendable: immutable after init.
public final class TorchWeightFile: WeightSource, @unchecked Sendable {
    public let path: String
    public let names: [String]
    private let tensors: [String: TorchTensorData]

    public init(url: URL) throws {
        path = url.path
        let stateDict = try TorchCheckpoint(url: url).stateDict()
        names = stateDict.tensors.map(\.name)
        var tensors: [String: TorchTensorData] = [:]
        for (name, data) in stateDict.tensors { tensors[name] = data }
        self.tensors = tensors
    }

    public func contains(_ name: String) -> Bool { tensors[name] != nil }

    private func data(_ name: String) throws -> TorchTensorData {
        guard let d = tensors[name] else { throw SafeTensorsError.missingTensor(path: path, tensor: name) }
        return d
    }

    public func shape(of name: String) throws -> [Int] { try data(name).shape }

    public func tensor(_ name: String) throws -> Tensor {
        let d = try data(name)
        guard let floats = d.floats else {
            throw SafeTensorsError.wrongDType(
                path: path, tensor: name, dtype: d.dtype.rawValue, expected: "a float type")
        }
        return floats
    }
}
