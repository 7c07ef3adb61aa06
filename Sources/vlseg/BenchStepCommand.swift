import ArgumentParser
import Foundation
import VLDistributed
import VLModels
import VLTensor
import VLTrain

/// `vlseg bench step` / `vlseg bench infer`: training-step and inference throughput on synthetic data.
struct BenchStepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "step",
        abstract: "Time training steps (forward, backward, all-reduce, AdamW) of a tuning method on synthetic data.",
        discussion: "Run under mpirun for several ranks. With --json the last line is one JSON object.")

    @OptionGroup var common: BenchModelOptions

    @Option(help: "Tuning method (tuning=NAME), with tuning.KEY=VALUE arguments for its options.")
    var tuning: String = "vlsm_dense_vl"

    @Argument(help: "Tuning options: tuning.KEY=VALUE.")
    var tuningOptions: [String] = []

    @Flag(help: "Serve the frozen vision features from the feature cache, as from the second epoch on (methods that leave the vision tower frozen).")
    var cached = false

    @Flag(help: "Also print where the timed steps' time goes, per op (forward and backward milliseconds per step).")
    var profile = false

    @Flag(help: "Under mpirun: also time rank 0 alone (the other ranks sleeping), alternating with all ranks together, and print the weak-scaling efficiency.")
    var scaling = false

    @Option(help: "With --scaling: rounds of (alone, together) phases of --steps steps each.")
    var rounds: Int = 3

    func run() throws {
        try reportingErrors {
            try common.run(training: true, tuning: tuning, tuningOptions: tuningOptions, cached: cached, profile: profile,
                           scaling: scaling, rounds: rounds)
        }
    }
}

struct BenchInferCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "infer", abstract: "Time inference (text-prompted segmentation) on synthetic data.")

    @OptionGroup var common: BenchModelOptions

    @Flag(help: "Also print where the timed passes' time goes, per op (milliseconds per pass).")
    var profile = false

    func run() throws {
        try reportingErrors { try common.run(training: false, tuning: "zero_shot", tuningOptions: [], profile: profile) }
    }
}

struct BenchModelOptions: ParsableArguments {
    @Option(help: "Model architecture preset: CLIPSeg tiny|small|base or cris-tiny|cris-base (created once in $VLSEG_CACHE/bench, memory-mapped like a real checkpoint).")
    var preset: String = "base"

    @Option(help: "A model directory instead of --preset.")
    var model: String?

    @Option(help: "Images per rank per step.")
    var batch: Int = 4

    @Option(help: "Input side in pixels.")
    var size: Int = 352

    @Option(help: "Timed steps.")
    var steps: Int = 5

    @Option(help: "Untimed warm-up steps.")
    var warmup: Int = 1

    @Option(help: "Threads per rank (default: cores / ranks on this machine).")
    var threads: Int?

    @Flag(help: "Print one JSON object as the last line.")
    var json = false

    @OptionGroup var precisionOption: PrecisionOption
    var precision: MatmulPrecision { precisionOption.precision }

    func modelDirectory(comm: Communicator) throws -> URL {
        if let model { return URL(fileURLWithPath: model) }
        let write: (URL) throws -> Void
        let dirName: String
        if let p = CLIPSegPreset(rawValue: preset) {
            dirName = "clipseg-\(p.rawValue)"
            write = { try CLIPSegInitializer.write(config: p.config, seed: 0, to: $0, processorSize: p.processorSize) }
        } else if let p = CRISPreset(rawValue: preset) {
            dirName = p.rawValue
            write = { try CRISInitializer.write(config: p.config, seed: 0, to: $0) }
        } else {
            let names = CLIPSegPreset.allCases.map(\.rawValue) + CRISPreset.allCases.map(\.rawValue)
            throw ValidationError("unknown preset '\(preset)'; choose one of \(names.joined(separator: ", "))")
        }
        let cache = ProcessInfo.processInfo.environment["VLSEG_CACHE"].map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/vlseg")
        let dir = cache.appendingPathComponent("bench/\(dirName)")
        try comm.rootDecides("bench model") {
            guard !FileManager.default.fileExists(atPath: dir.appendingPathComponent("model.safetensors").path) else { return }
            printError("creating the \(preset) model in \(dir.path) (once)")
            try write(dir)
        }
        return dir
    }

    func run(training: Bool, tuning: String, tuningOptions: [String], cached: Bool = false, profile: Bool = false,
             scaling: Bool = false, rounds: Int = 3) throws {
        let comm = Communicators.make(timeout: 600)
        ComputeThreads.set(threads ?? ComputeThreads.defaultCount(for: comm.localSize))
        if scaling && comm.size < 2 {
            throw ValidationError("--scaling compares rank 0 alone with all ranks together: run it under mpirun with at least 2 ranks")
        }
        if scaling && rounds < 1 { throw ValidationError("--rounds must be at least 1") }
        try precisionOption.apply()
        defer { try? MatmulPrecision.set(.fp32) }
        let dir = try modelDirectory(comm: comm)
        let m = try ModelDirectory.load(dir)
        try m.validateInputSize(size)
        var names: [String] = []
        var visionFrozen = true
        if training {
            let resolved = try ConfigLoader(configDir: nil).load(overrides: ["tuning=\(tuning)"] + tuningOptions)
            let (method, trainable) = try RunSetup.tuning(resolved.config.tuning, seed: 0, model: m)
            names = trainable
            visionFrozen = method.visionIsFrozen
        }
        if cached && !visionFrozen {
            throw ValidationError("--cached: tuning '\(tuning)' trains tensors inside the vision tower, so its features cannot be cached")
        }
        let tokenizer = try CLIPTokenizer(directory: dir)
        let texts = ["a photo of a polyp", "left ventricle endocardium", "benign breast tumour", "a skin lesion"]
        let encodings = tokenizer.encodeBatch((0..<batch).map { texts[$0 % texts.count] }, padding: .longest(max: 77))
        let prompts = TextPrompts(inputIDs: encodings.map(\.inputIDs), attentionMask: encodings.map(\.attentionMask))
        var rng = SplitMix64(seed: UInt64(17 + comm.rank))
        let pixels = Tensor.randomNormal([batch, 3, size, size], generator: &rng)
        let target = Tensor(shape: [batch, size, size], values: (0..<(batch * size * size)).map { i in
            let x = i % size, y = (i / size) % size
            return (x - size / 2) * (x - size / 2) + (y - size / 3) * (y - size / 3) < size * size / 16 ? 1 : 0
        })
        // As the trainer does at start-up: every rank proves it holds the same frozen weights (which
        // reads every frozen page once, so those pages are resident and shared by the ranks).
        try comm.verifySame("the frozen model weights", fingerprint: m.parameters.fingerprint(excluding: Set(names)))
        let arena = names.isEmpty ? nil : ParameterArena(store: m.parameters, names: names)
        var nodes: [String: GradNode] = [:]
        for n in names { nodes[n] = m.parameters[n].node }
        let sync = arena.map { GradientSynchronizer(arena: $0, comm: comm, bucketBytes: 25 << 20, overlap: true, nodes: nodes) }
        var optimizer = AdamW(weightDecay: 1e-3)
        // With --cached, the features are computed once here (the first epoch) and served from the
        // cache in every timed step, exactly as the trainer does from the second epoch on.
        let cache = cached ? FeatureCache(count: batch, budgetBytes: 8 << 30, directory: FileManager.default.temporaryDirectory,
                                          name: "bench-rank\(comm.rank)") : nil
        let sampleIDs = Array(0..<batch)
        if let cache {
            _ = try cache.features(samples: sampleIDs) { m.frozenFeatures(pixels: pixels) }
            // Frozen text towers: per-prompt features from the first epoch on, as in training.
            (m as? CLIPSegModel)?.textCache = TextFeatureCache()
        }
        func runForward() throws -> Tensor {
            guard let cache else { return m.segmentationLogits(pixels: pixels, text: prompts) }
            let features = try cache.features(samples: sampleIDs) { m.frozenFeatures(pixels: pixels) }
            return m.segmentationLogits(features: features, pixels: pixels, text: prompts)
        }
        let loss = SegmentationLoss()
        func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }
        let opProfile = profile ? OpProfile() : nil
        defer { OpProfile.active = nil }
        /// One step (training: forward, backward, gradient all-reduce through `sync`, optimiser).
        func runStep(sync: GradientSynchronizer?, profiled: Bool) throws -> StepTimes {
            let flops0 = BLAS.flopCount
            if profiled, let opProfile {
                OpProfile.active = opProfile
                opProfile.startForward()
            }
            defer { OpProfile.active = nil }
            var times = StepTimes()
            let t0 = now()
            if let arena, let sync {
                sync.beginFinalBackward()
                let logits = try runForward()
                let l = loss(logits, target: target)
                let t1 = now()
                l.backward(onLeafReady: { sync.leafReady($0) })
                let t2 = now()
                sync.finish(microSteps: 1)
                let t3 = now()
                clipGradientNorm(arena, maxNorm: 0.5)
                optimizer.update(arena, lr: 1e-4)
                arena.zeroGradients()
                let t4 = now()
                times.forward = t1 - t0; times.backward = t2 - t1; times.wait = t3 - t2; times.optimizer = t4 - t3
                times.steps = [t4 - t0]
            } else {
                _ = try GradMode.withoutGradients { try runForward() }
                times.forward = now() - t0
                times.steps = [times.forward]
            }
            times.flops = BLAS.flopCount - flops0
            return times
        }
        // The references (sgemm, FMA peak) are measured before and after the steps and the better
        // of the two kept: on a shared machine a neighbour can take a core for one of them, which
        // would otherwise show as a utilisation above 100 %.
        let references = { (GEMMBenchmark.measure(GEMMBenchmark.vitShapes.last!, minSeconds: 0.3),
                            FMAPeak.measure(threads: ComputeThreads.count, minSeconds: 0.2)) }
        let before = references()
        var warmupSeconds = 0.0
        for _ in 0..<warmup {
            comm.barrier(label: "bench step")
            warmupSeconds = max(warmupSeconds, try runStep(sync: sync, profiled: false).total)
        }
        // The other ranks wait out rank 0's alone phase in one collective: the watchdog must allow it.
        if scaling { comm.timeout = max(comm.timeout, 4 * warmupSeconds * Double(steps) + 60) }
        var together = StepTimes(), aloneAll = StepTimes()
        var scalingRounds: [(alone: Double, together: Double)] = []
        // --scaling: rank 0 alone (the other ranks sleep, leaving their cores idle as a one-rank job
        // would) and all ranks together, alternating which comes first, so both are measured under
        // the same conditions of a shared machine.
        let soloSync = scaling ? arena.map { GradientSynchronizer(arena: $0, comm: SingleProcessCommunicator(), bucketBytes: 25 << 20,
                                                                  overlap: true, nodes: nodes) } : nil
        for round in 0..<(scaling ? rounds : 1) {
            var alone = StepTimes(), inRound = StepTimes()
            func runAlone() throws {
                comm.barrier(label: "bench alone phase")
                if comm.isRoot { for _ in 0..<steps { alone.add(try runStep(sync: soloSync, profiled: false)) } }
                comm.idleBarrier(label: "bench alone phase")
            }
            if scaling && round % 2 == 0 { try runAlone() }
            for _ in 0..<steps {
                comm.barrier(label: "bench step")
                inRound.add(try runStep(sync: sync, profiled: true))
            }
            if scaling && round % 2 == 1 { try runAlone() }
            together.add(inRound)
            aloneAll.add(alone)
            if scaling { scalingRounds.append((Double(batch * steps) / alone.total, Double(batch * steps) / inRound.total)) }
        }
        let forward = together.forward, backward = together.backward, wait = together.wait, optim = together.optimizer
        let total = together.total, flops = together.flops, stepSeconds = together.steps
        let images = Double(batch * together.steps.count)
        let perRank = images / max(total, 1e-9)
        let alone = Double(batch * aloneAll.steps.count) / max(aloneAll.total, 1e-9)
        let gflops = flops / max(total, 1e-9) / 1e9
        // Memory of the training state, before the reference sgemm allocates its own matrices.
        var pss = [ProcessMemory.pssMB, ProcessMemory.peakRSSMB, perRank]
        let rankPSS = pss[0], rankPeakRSS = pss[1]
        let after = references()
        let sgemm = max(before.0, after.0), peak = max(before.1, after.1)
        comm.allReduceSum(&pss, label: "bench totals")
        // Every rank's compute and wait seconds, so an imbalance between ranks shows as such.
        var perRankTimes = [Double](repeating: 0, count: 2 * comm.size)
        perRankTimes[2 * comm.rank] = forward + backward + optim
        perRankTimes[2 * comm.rank + 1] = wait
        comm.allReduceSum(&perRankTimes, label: "bench per-rank times")
        guard comm.isRoot else { return }
        let what = (training ? "training step (\(tuning), \(arena?.count.grouped ?? "0") trainable)" : "inference")
            + (cached ? ", vision features from the feature cache" : "")
        func pct(_ x: Double) -> String { String(format: "%.1f%%", 100 * x / max(total, 1e-9)) }
        let architecture: String
        if let clipseg = m as? CLIPSegModel {
            architecture = "CLIPSeg \(clipseg.config.visionConfig.hiddenSize)-wide ViT/\(clipseg.config.visionConfig.patchSize!)"
        } else if let cris = m as? CRISModel {
            architecture = "CRIS, ResNet width \(cris.config.clip.visionWidth) layers \(cris.config.clip.visionLayers)"
        } else {
            architecture = m.architectureName
        }
        print("\(what): \(architecture), \(size)x\(size), batch \(batch) per rank, \(comm.size) rank(s) x \(ComputeThreads.count) thread(s), OpenBLAS \(BLAS.coreName)"
              + (precision == .bf16 ? ", bf16 products (their peak is twice the float32 FMA peak below)" : ""))
        print(String(format: "  %.2f images/s per rank, %.2f images/s total", perRank, pss[2]))
        print("  time: data 0.0% (synthetic), forward \(pct(forward)), backward \(pct(backward)), all-reduce wait \(pct(wait)), optimiser \(pct(optim))")
        if training && comm.size > 1 {
            let perStep = (0..<comm.size).map { r in
                String(format: "rank %d %.3f s + %.3f s", r, perRankTimes[2 * r] / Double(stepSeconds.count), perRankTimes[2 * r + 1] / Double(stepSeconds.count))
            }
            print("  per step, compute + all-reduce wait: " + perStep.joined(separator: ", "))
        }
        if !scalingRounds.isEmpty {
            let rounds = scalingRounds.map { String(format: "%.3f / %.3f", $0.alone, $0.together) }.joined(separator: ", ")
            print(String(format: "  weak scaling: rank 0 alone %.3f images/s, with %d ranks %.3f images/s per rank = %.1f%% (%d alternating rounds of %d steps, alone / together: %@)",
                         alone, comm.size, perRank, 100 * perRank / alone, scalingRounds.count, steps, rounds))
        }
        print(String(format: "  model FLOPs per image %.1f GFLOP (matrix products); achieved %.1f GFLOP/s; sgemm 1024^3 in this process (best of before and after) %.1f GFLOP/s; ratio %.0f%%",
                     flops / images / 1e9, gflops, sgemm, 100 * gflops / max(sgemm, 1e-9)))
        print(String(format: "  FMA peak in this process %.1f GFLOP/s (%d thread(s), %d-lane FMA loop): sgemm reaches %.0f%% of it, %@ %.0f%% (model FLOP utilisation)",
                     peak, ComputeThreads.count, FMAPeak.lanes, 100 * sgemm / max(peak, 1e-9), training ? "the step" : "inference",
                     100 * gflops / max(peak, 1e-9)))
        print(String(format: "  memory: peak RSS %.0f MB (rank 0), PSS %.0f MB (rank 0), total PSS %.0f MB over %d rank(s)",
                     rankPeakRSS, rankPSS, pss[0], comm.size))
        if let opProfile { print("time per op (rank 0):\n" + opProfile.report(steps: together.steps.count, stepSeconds: total)) }
        if json {
            var obj: [String: Any] = ["images_per_s": perRank, "images_per_s_total": pss[2], "gflops_per_s": gflops,
                                      "sgemm_gflops_per_s": sgemm, "fma_peak_gflops_per_s": peak, "mfu": gflops / max(peak, 1e-9),
                                      "peak_rss_mb": rankPeakRSS, "pss_mb": rankPSS,
                                      "total_pss_mb": pss[0], "ranks": comm.size, "threads": ComputeThreads.count, "batch": batch,
                                      "size": size, "forward_s": forward, "backward_s": backward, "allreduce_wait_s": wait,
                                      "optimizer_s": optim, "flops_per_image": flops / images, "tuning": training ? tuning : "inference",
                                      "precision": precision.rawValue, "step_s": stepSeconds,
                                      "rank_compute_s": (0..<comm.size).map { perRankTimes[2 * $0] },
                                      "rank_wait_s": (0..<comm.size).map { perRankTimes[2 * $0 + 1] }]
            if !scalingRounds.isEmpty {
                obj["alone_images_per_s"] = alone
                obj["scaling_efficiency"] = perRank / alone
                obj["alone_round_images_per_s"] = scalingRounds.map(\.alone)
                obj["together_round_images_per_s"] = scalingRounds.map(\.together)
            }
            try printJSONLine(obj)
        }
    }
}

/// Seconds and matrix-product FLOPs of timed steps, summed.
struct StepTimes {
    var forward = 0.0, backward = 0.0, wait = 0.0, optimizer = 0.0, flops = 0.0
    /// Each step's wall time, in order.
    var steps: [Double] = []
    var total: Double { steps.reduce(0, +) }

    mutating func add(_ other: StepTimes) {
        forward += other.forward; backward += other.backward; wait += other.wait; optimizer += other.optimizer
        flops += other.flops
        steps += other.steps
    }
}
