import ArgumentParser
import Foundation
import VLData
import VLModels
import VLTokenizer

/// `vlseg bench data`: loader throughput (decode, resize, augment, normalise, tokenise) on a dataset.
struct BenchDataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Data loader throughput in images/s.",
        discussion: """
            Runs the training loader over --root (shuffled, as in training) and reports images/s, counting from \
            the creation of the batch stream (thread start-up included) to the last batch. The consumer does \
            nothing else, so the figure is what the loader can feed a trainer.
            """)

    @Option(help: "Dataset root (medvlsm layout).")
    var root: String

    @Option(help: "Split to read.")
    var split = "train"

    @Option(help: "Model input side.")
    var size = 352

    @Option(help: "Loader worker threads (0 = prepare on the consuming thread).")
    var workers = 1

    @Option(help: "Batch size.")
    var batch = 8

    @Option(help: "Batches to time (default: one epoch); more than an epoch continues into the next.")
    var batches: Int?

    @Option(help: "Model or tokenizer directory with vocab.json and merges.txt (default: prompts are not tokenised).")
    var tokenizer: String?

    @Flag(help: "Apply TuneVLSeg's training augmentations.")
    var augment = false

    @Flag(help: "Print one JSON object as the last line.")
    var json = false

    func run() throws {
        try reportingErrors {
            guard workers >= 0, batch >= 1, size >= 1 else {
                throw ValidationError("--workers must be >= 0, --batch and --size >= 1")
            }
            let rootURL = URL(fileURLWithPath: root)
            let samples = try DatasetSplits(root: rootURL).samples(split, promptChoice: .random)
            let tok = try tokenizer.map { try CLIPTokenizer(directory: URL(fileURLWithPath: $0)) }
            let sampler = try ShardedSampler(count: samples.count, batchSize: batch, seed: 0, mode: .training(.wrap))
            let config = DataLoaderConfig(
                imageSize: size, workers: workers, seed: 0, promptChoice: .random,
                augmentation: augment ? .tuneVLSeg : nil)
            let loader = try DataLoader(samples: samples, sampler: sampler, tokenizer: tok, config: config)
            let target = batches ?? sampler.batchesPerEpoch
            printError(
                "\(samples.count) samples, \(sampler.batchesPerEpoch) batches of \(batch) per epoch; timing \(target) batches at \(size)x\(size) with \(workers) worker(s)"
                    + (tok == nil ? " (no tokenizer)" : ""))

            let start = DispatchTime.now().uptimeNanoseconds
            var images = 0, done = 0, epoch = 0
            while done < target {
                let stream = try loader.batches(epoch: epoch)
                while done < target, let b = try stream.next() {
                    images += b.count
                    done += 1
                }
                stream.close()
                epoch += 1
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            let rate = Double(images) / max(seconds, 1e-9)
            print(
                String(
                    format: "%d images in %.3f s: %.1f images/s (%.2f ms per image), %d worker(s), batch %d, %dx%d",
                    images, seconds, rate, 1000 * seconds / Double(max(images, 1)), workers, batch, size, size))
            if json {
                let obj: [String: Any] = [
                    "images": images, "seconds": seconds, "images_per_s": rate, "workers": workers,
                    "batch": batch, "size": size, "tokenized": tok != nil, "augment": augment,
                ]
                try printJSONLine(obj)
            }
        }
    }
}
