import Foundation
import VLData
import VLTuning
import XCTest

@testable import VLTrain

/// The config system: composition of configs/ groups, overrides, typed loading, errors, printing, hashing.
final class ConfigTests: XCTestCase {
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let configDir = repoRoot.appendingPathComponent("configs")

    /// The repository's configs, with a fixed environment (no VLSEG_CACHE, a known HOME).
    func repoLoader(_ env: [String: String] = ["HOME": "/home/tester"]) -> ConfigLoader {
        ConfigLoader(configDir: ConfigTests.configDir, environment: env)
    }

    func load(_ overrides: [String] = [], env: [String: String] = ["HOME": "/home/tester"]) throws -> ResolvedConfig {
        try repoLoader(env).load(overrides: overrides)
    }

    /// Runs `body`, expecting a ConfigError, and returns it.
    func configError(_ body: () throws -> Any, file: StaticString = #filePath, line: UInt = #line) -> ConfigError? {
        do {
            _ = try body()
            XCTFail("expected a ConfigError", file: file, line: line)
            return nil
        } catch let e as ConfigError {
            return e
        } catch {
            XCTFail("expected a ConfigError, got \(error)", file: file, line: line)
            return nil
        }
    }

    /// A scratch configs/ directory with the given files.
    func scratchConfigs(_ files: [String: String]) throws -> URL {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-config-\(UUID().uuidString)")
        let dir = root.appendingPathComponent("configs")
        for (path, text) in files {
            let url = dir.appendingPathComponent(path)
            try FileManager.default.createDirectory(
                at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: url, atomically: true, encoding: .utf8)
        }
        addTeardownBlock { try? FileManager.default.removeItem(at: root) }
        return dir
    }

    // MARK: Composition

    func testPrimaryConfigComposesDefaultGroups() throws {
        let r = try load()
        let c = r.config
        XCTAssertEqual(r.choices["model"], "clipseg_rd64_refined")
        XCTAssertEqual(r.choices["tuning"], "decoder")
        XCTAssertEqual(r.choices["data"], "kvasir")
        XCTAssertEqual(r.choices["trainer"], "vlsm_adapter")
        XCTAssertNil(r.choices["experiment"])
        XCTAssertEqual(c.name, "kvasir-decoder")
        XCTAssertEqual(c.run.dir, "runs/kvasir-decoder")
        XCTAssertEqual(c.run.cacheDir, "/home/tester/.cache/vlseg")
        XCTAssertEqual(c.model.path, "models/clipseg-rd64-refined")
        XCTAssertEqual(c.model.imageSize, 352, "the papers' input size (the checkpoint's vision config says 224)")
        XCTAssertEqual(c.model.preset, .none)
        XCTAssertEqual(c.tuning.method, "decoder")
        XCTAssertEqual(c.data.root, "data/kvasir_polyp", "medvlsm's folder name under data_root")
        XCTAssertEqual(c.data.prompt, .random)
        XCTAssertEqual(c.trainer.lr, 1e-3)
        XCTAssertEqual(c.trainer.weightDecay, 1e-3)
        XCTAssertEqual(c.trainer.clipGradNorm, 0.5)
        XCTAssertEqual(c.trainer.globalBatchSize, 32)
        XCTAssertEqual(c.trainer.schedule.name, .plateau)
        XCTAssertEqual(c.trainer.schedule.factor, 0.3)
        XCTAssertEqual(c.trainer.schedule.patience, 5)
        XCTAssertEqual(c.trainer.earlyStopping.patience, 20)
        XCTAssertEqual(c.resume, .none)
        XCTAssertTrue(c.comm.overlap)
        XCTAssertEqual(r.sources["trainer.lr"], .file("configs/trainer/vlsm_adapter.yaml", line: 17))
        XCTAssertEqual(r.sources["data.augment.enabled"], .builtin)
    }

    func testGroupAndValueOverrides() throws {
        let r = try load([
            "tuning=vlsm_dense_vl", "trainer.max_epochs=20", "data.prompt=[p1,p2]", "seed=7",
            "resume=auto", "comm.overlap=false", "trainer.threads=3",
        ])
        let c = r.config
        XCTAssertEqual(c.tuning.method, "vlsm_dense_vl")
        XCTAssertEqual(c.tuning.family, "vlsm_dense")
        XCTAssertEqual(try c.tuning.string("parts"), "vl")
        XCTAssertEqual(try c.tuning.int("bottleneck"), 64)
        XCTAssertEqual(try c.tuning.int("cond_bottleneck"), 256)
        XCTAssertEqual(c.trainer.maxEpochs, 20)
        XCTAssertEqual(c.data.prompt, .anyOf(["p1", "p2"]))
        XCTAssertEqual(c.seed, 7)
        XCTAssertEqual(c.resume, .auto)
        XCTAssertFalse(c.comm.overlap)
        XCTAssertEqual(c.trainer.threads, 3)
        XCTAssertEqual(c.name, "kvasir-vlsm_dense_vl", "interpolation sees the final tuning.method")
        XCTAssertEqual(r.sources["trainer.max_epochs"], .override("trainer.max_epochs=20"))
        XCTAssertEqual(r.choices["tuning"], "vlsm_dense_vl")
        // A later override of the same key wins.
        XCTAssertEqual(try load(["trainer.lr=0.1", "trainer.lr=0.2"]).config.trainer.lr, 0.2)
        // resume as a path; null values.
        XCTAssertEqual(
            try load(["resume=runs/x/checkpoints/step-0000010"]).config.resume, .path("runs/x/checkpoints/step-0000010")
        )
        XCTAssertEqual(try load(["resume=null"]).config.resume, .none)
    }

    func testListValuesFromFilesAndOverrides() throws {
        let c = try load(["tuning=lora", "tuning.targets=[q_proj, k_proj, v_proj]", "trainer.betas=[0.8,0.95]"]).config
        XCTAssertEqual(try c.tuning.strings("targets"), ["q_proj", "k_proj", "v_proj"])
        XCTAssertEqual(try c.tuning.strings("towers"), ["vision", "text"])
        XCTAssertEqual(c.trainer.betas, [0.8, 0.95])
        XCTAssertEqual(try c.tuning.int("rank"), 8)
        XCTAssertEqual(try c.tuning.double("alpha"), 16)
        // One scalar where a list of strings is expected is a one-element list.
        XCTAssertEqual(try load(["tuning=lora", "tuning.towers=vision"]).config.tuning.strings("towers"), ["vision"])
        XCTAssertEqual(try load(["data.prompt=p3"]).config.data.prompt, .key("p3"))
        XCTAssertEqual(try load(["data.prompt=[p4]"]).config.data.prompt, .key("p4"))
    }

    func testExperimentSelectsGroupsAndOverridesValues() throws {
        let r = try load(["experiment=kvasir/vlsm_shallow_vl"])
        XCTAssertEqual(r.config.tuning.method, "vlsm_shallow_vl")
        XCTAssertEqual(try r.config.tuning.int("bottleneck"), 512)
        XCTAssertEqual(r.config.trainer.lr, 3e-4, "the experiment overrides the trainer group's lr")
        XCTAssertEqual(r.config.name, "kvasir-vlsm_shallow_vl")
        XCTAssertEqual(r.sources["trainer.lr"], .file("configs/experiment/kvasir/vlsm_shallow_vl.yaml", line: 24))

        // Command-line choices beat the experiment's; value overrides beat everything.
        let t = try load(["experiment=busi/maple", "tuning=coop", "trainer.lr=5e-4", "model=clipseg_rd64_refined"])
            .config
        XCTAssertEqual(t.tuning.method, "coop")
        XCTAssertEqual(t.trainer.lr, 5e-4)
        XCTAssertEqual(t.model.name, "clipseg_rd64_refined")
        XCTAssertEqual(t.data.name, "busi")
        XCTAssertEqual(t.data.prompt, .key("p1"))
        XCTAssertEqual(t.trainer.loss.bceWeight, 0.2, "TuneVLSeg's trainer group")

        let m = try load(["experiment=busi/maple"]).config
        XCTAssertEqual(m.model.name, "clipseg_rd64")
        XCTAssertEqual(try m.tuning.string("init"), "none", "TuneVLSeg's MaPLe runs: context_initializer=null")
        XCTAssertEqual(m.trainer.lr, 2e-4)
        XCTAssertEqual(m.trainer.weightDecay, 0)
    }

    func testDemoExperimentUsesTheCache() throws {
        let c = try load(["experiment=demo"], env: ["HOME": "/home/tester", "VLSEG_CACHE": "/scratch/cache"]).config
        XCTAssertEqual(c.model.preset, .small)
        XCTAssertEqual(c.model.preset.clipsegPreset, .small)
        XCTAssertEqual(c.model.path, "/scratch/cache/demo/clipseg-small")
        XCTAssertTrue(c.data.isDemo)
        XCTAssertEqual(c.data.root, "/scratch/cache/demo/data-200x224-seed0")
        XCTAssertEqual(c.run.dir, "runs/demo")
        XCTAssertGreaterThan(c.trainer.maxSteps, 0)
        // Without VLSEG_CACHE: under the home directory.
        XCTAssertEqual(try load(["experiment=demo"]).config.model.path, "/home/tester/.cache/vlseg/demo/clipseg-small")
        // The demo data's name follows its settings.
        XCTAssertEqual(
            try load(["experiment=demo", "data.demo.count=40"]).config.data.root,
            "/home/tester/.cache/vlseg/demo/data-40x224-seed0")
    }

    func testEveryExperimentAndTuningOptionLoads() throws {
        let loader = repoLoader()
        let experiments = loader.options(of: "experiment")
        XCTAssertGreaterThanOrEqual(experiments.count, 8 * 13 + 1)
        for e in experiments {
            XCTAssertNoThrow(try loader.load(overrides: ["experiment=\(e)"]), e)
        }
        for t in loader.options(of: "tuning") {
            let c = try loader.load(overrides: ["tuning=\(t)"]).config
            XCTAssertEqual(c.tuning.method, t, "configs/tuning/\(t).yaml names its own method")
            XCTAssertNotNil(TuningMethodRegistry.shared.schema(named: t))
        }
        let medvlsmFolders = [
            "kvasir": "kvasir_polyp", "bkai": "bkai_polyp", "clinicdb": "clinicdb_polyp", "isic": "isic", "dfu": "dfu",
            "camus": "camus", "busi": "busi", "chexlocalize": "chexlocalize", "cvc300": "cvc300_polyp",
            "colondb": "colondb_polyp", "etis": "etis_polyp", "polyp": "", "cityscapes": "cityscapes_binarized",
            "pascal_voc": "VOC2012_binarized",
        ]
        for (d, folder) in medvlsmFolders {
            let c = try loader.load(overrides: ["data=\(d)", "data_root=/srv/medvlsm"]).config
            XCTAssertEqual(c.data.root, folder.isEmpty ? "/srv/medvlsm" : "/srv/medvlsm/\(folder)", d)
        }
        for m in [
            "decoder", "full", "zero_shot", "vlsm_shallow_v", "vlsm_shallow_vl", "vlsm_shallow_vlc", "vlsm_dense_v",
            "vlsm_dense_vl", "vlsm_dense_vlc", "lora", "coop", "cocoop", "vpt_shallow", "vpt_deep", "maple",
            "shared_attention", "shared_separate", "vpt", "vlsm_shallow", "vlsm_dense",
        ] {
            XCTAssertNotNil(TuningMethodRegistry.shared.schema(named: m), m)
        }
    }

    // MARK: Errors

    func testTypeErrorsNameKeyAndSource() throws {
        let e = configError { try self.load(["trainer.lr=fast"]) }
        XCTAssertEqual(e?.kind, .typeMismatch)
        XCTAssertEqual(e?.path, "trainer.lr")
        XCTAssertEqual(e?.source, .override("trainer.lr=fast"))
        XCTAssertTrue(e?.description.contains("expected a number") ?? false, e?.description ?? "")

        let i = configError { try self.load(["trainer.max_steps=2.5"]) }
        XCTAssertEqual(i?.path, "trainer.max_steps")
        XCTAssertTrue(i?.description.contains("an integer") ?? false)

        let b = configError { try self.load(["comm.overlap=maybe"]) }
        XCTAssertEqual(b?.path, "comm.overlap")

        let l = configError { try self.load(["trainer.betas=0.9"]) }
        XCTAssertEqual(l?.path, "trainer.betas")
        XCTAssertTrue(l?.description.contains("expected a list") ?? false, l?.description ?? "")

        let s = configError { try self.load(["trainer.schedule=cosine"]) }
        XCTAssertEqual(s?.path, "trainer.schedule")
        XCTAssertTrue(s?.description.contains("expected a mapping") ?? false, s?.description ?? "")

        let t = configError { try self.load(["tuning=vlsm_dense", "tuning.bottleneck=wide"]) }
        XCTAssertEqual(t?.path, "tuning.bottleneck")
        XCTAssertEqual(t?.source, .override("tuning.bottleneck=wide"))

        // A wrong type in a file names the file and line.
        let dir = try scratchConfigs([
            "config.yaml": "defaults:\n  - trainer: bad\n",
            "trainer/bad.yaml": "# a comment\nlr: 1e-3\nmax_epochs: many\n",
        ])
        let f = configError { try ConfigLoader(configDir: dir, environment: [:]).load() }
        XCTAssertEqual(f?.path, "trainer.max_epochs")
        XCTAssertEqual(f?.source, .file("configs/trainer/bad.yaml", line: 3))
        XCTAssertTrue(
            f?.description.hasPrefix("configs/trainer/bad.yaml:3: trainer.max_epochs: expected an integer") ?? false,
            f?.description ?? "")
    }

    func testInvalidValuesAndChoices() throws {
        let c = configError { try self.load(["trainer.schedule.name=cosin"]) }
        XCTAssertEqual(c?.kind, .invalidValue)
        XCTAssertEqual(c?.path, "trainer.schedule.name")
        XCTAssertEqual(c?.suggestion, "cosine")
        XCTAssertTrue(c?.description.contains("constant, cosine, plateau") ?? false, c?.description ?? "")

        let b = configError { try self.load(["data.batch_size=0"]) }
        XCTAssertEqual(b?.path, "data.batch_size")
        XCTAssertEqual(b?.source, .override("data.batch_size=0"))

        let p = configError { try self.load(["tuning=vlsm_dense", "tuning.parts=vx"]) }
        XCTAssertEqual(p?.path, "tuning.parts")
        let lora = configError { try self.load(["tuning=lora", "tuning.targets=[q_proj, v_prj]"]) }
        XCTAssertEqual(lora?.suggestion, "v_proj")
        XCTAssertNotNil(configError { try self.load(["data.on_error=ignore"]) })
        XCTAssertNotNil(configError { try self.load(["model.preset=huge"]) })
        XCTAssertNotNil(configError { try self.load(["data.prompt=[]"]) })
        XCTAssertNotNil(configError { try self.load(["trainer.max_steps=0", "trainer.max_epochs=0"]) })
        XCTAssertNotNil(configError { try self.load(["trainer.betas=[0.9]"]) })
        let precision = configError { try self.load(["trainer.precision=bf8"]) }
        XCTAssertEqual(precision?.path, "trainer.precision")
        XCTAssertEqual(precision?.suggestion, "bf16")
        XCTAssertTrue(precision?.description.contains("fp32, bf16") ?? false, precision?.description ?? "")
    }

    func testUnknownKeysSuggestTheNearestValidKey() throws {
        let e = configError { try self.load(["trainer.lrr=0.1"]) }
        XCTAssertEqual(e?.kind, .unknownKey)
        XCTAssertEqual(e?.path, "trainer.lrr")
        XCTAssertEqual(e?.suggestion, "trainer.lr")
        XCTAssertEqual(e?.source, .override("trainer.lrr=0.1"))
        XCTAssertTrue(e?.description.contains("did you mean 'trainer.lr'?") ?? false, e?.description ?? "")

        XCTAssertEqual(configError { try self.load(["data.batchsize=4"]) }?.suggestion, "data.batch_size")
        XCTAssertEqual(configError { try self.load(["comm.timeout=10"]) }?.suggestion, "comm.timeout_s")
        // The right name in the wrong section.
        XCTAssertEqual(configError { try self.load(["lr=0.1"]) }?.suggestion, "trainer.lr")
        XCTAssertEqual(configError { try self.load(["data.max_epochs=3"]) }?.suggestion, "trainer.max_epochs")
        // A misspelt group is a top-level key.
        XCTAssertEqual(configError { try self.load(["tunning=coop"]) }?.suggestion, "tuning")

        // Method options: unknown for this method, with the nearest.
        let t = configError { try self.load(["tuning=vlsm_dense_vl", "tuning.bottlenek=32"]) }
        XCTAssertEqual(t?.path, "tuning.bottlenek")
        XCTAssertEqual(t?.suggestion, "tuning.bottleneck")
        let coop = configError { try self.load(["tuning=coop", "tuning.rank=4"]) }
        XCTAssertEqual(coop?.kind, .unknownKey)
        XCTAssertTrue(coop?.description.contains("depth, n_ctx, init") ?? false, coop?.description ?? "")
        let none = configError { try self.load(["tuning.bottleneck=4"]) }
        XCTAssertTrue(none?.description.contains("it has no options") ?? false, none?.description ?? "")

        let m = configError { try self.load(["tuning.method=vlsm_dens_vl"]) }
        XCTAssertEqual(m?.kind, .unknownMethod)
        XCTAssertEqual(m?.suggestion, "vlsm_dense_vl")

        // In a file: names the file and line.
        let dir = try scratchConfigs([
            "config.yaml": "defaults:\n  - _self_\n  - data: d\nseed: 1\n",
            "data/d.yaml": "name: d\nroot: /x\nprompt: p1\nworker: 4\n",
        ])
        let f = configError { try ConfigLoader(configDir: dir, environment: [:]).load() }
        XCTAssertEqual(f?.path, "data.worker")
        XCTAssertEqual(f?.suggestion, "data.workers")
        XCTAssertEqual(f?.source, .file("configs/data/d.yaml", line: 4))
    }

    func testUnknownGroupOptionListsTheAvailableOnes() throws {
        let e = configError { try self.load(["tuning=vlsm_dense_vll"]) }
        XCTAssertEqual(e?.kind, .unknownGroupOption)
        XCTAssertEqual(e?.suggestion, "vlsm_dense_vl")
        XCTAssertEqual(e?.source, .override("tuning=vlsm_dense_vll"))
        for option in ["coop", "decoder", "vlsm_dense_vlc", "vpt_deep"] {
            XCTAssertTrue(e?.description.contains(option) ?? false, e?.description ?? "")
        }
        let x = configError { try self.load(["experiment=kvasir/vlsm_dense"]) }
        XCTAssertEqual(x?.kind, .unknownGroupOption)
        XCTAssertTrue(x?.description.contains("kvasir/vlsm_dense_vl") ?? false)
        XCTAssertEqual(configError { try self.load(["data=kvasr"]) }?.suggestion, "kvasir")

        let dir = try scratchConfigs([
            "config.yaml": "defaults:\n  - model: nothere\n",
            "model/real.yaml": "name: real\n",
        ])
        let f = configError { try ConfigLoader(configDir: dir, environment: [:]).load() }
        XCTAssertEqual(f?.source, .file("configs/config.yaml", line: 2))
        XCTAssertTrue(f?.description.contains("available: real") ?? false, f?.description ?? "")
    }

    func testBadOverridesAndYAML() throws {
        XCTAssertEqual(configError { try self.load(["trainer.lr"]) }?.kind, .badOverride)
        XCTAssertEqual(configError { try self.load(["=3"]) }?.kind, .badOverride)
        XCTAssertEqual(configError { try self.load(["trainer..lr=3"]) }?.kind, .badOverride)
        XCTAssertEqual(configError { try self.load(["seed.x=3"]) }?.kind, .badOverride)
        let dir = try scratchConfigs(["config.yaml": "seed: 1\nrun:\n  dir: [unclosed\n"])
        let e = configError { try ConfigLoader(configDir: dir, environment: [:]).load() }
        XCTAssertEqual(e?.kind, .parse)
        if case let .file(path, line)? = e?.source?.kind {
            XCTAssertEqual(path, "configs/config.yaml")
            XCTAssertNotNil(line)
        } else {
            XCTFail("no file source: \(String(describing: e))")
        }
    }

    // MARK: Hydra semantics on scratch configs

    func testSelfOrderBasesGlobalPackagesAndOverrideSyntax() throws {
        let dir = try scratchConfigs([
            "config.yaml": """
            defaults:
              - model: m1
              - trainer: fast
              - experiment: null
              - _self_
            seed: 5
            model:
              image_size: 128
            """,
            "model/m1.yaml": "name: m1\npath: /m1\nimage_size: 64\n",
            "model/m2.yaml": "name: m2\npath: /m2\n",
            "trainer/base.yaml": "lr: 0.5\nmax_epochs: 3\n",
            "trainer/fast.yaml": "defaults:\n  - base\nlr: 0.25\n",
            "experiment/e.yaml": """
            # @package _global_
            defaults:
              - override /model: m2
            seed: 9
            trainer:
              max_epochs: 4
            """,
        ])
        let loader = ConfigLoader(configDir: dir, environment: [:])
        let c = try loader.load().config
        XCTAssertEqual(c.model.imageSize, 128, "_self_ last: the primary's own values win")
        XCTAssertEqual(c.model.name, "m1")
        XCTAssertEqual(c.trainer.lr, 0.25, "a group option overrides its base")
        XCTAssertEqual(c.trainer.maxEpochs, 3, "... and inherits the rest")
        XCTAssertEqual(c.seed, 5)
        let e = try loader.load(overrides: ["experiment=e"]).config
        XCTAssertEqual(e.model.name, "m2", "the experiment's `override /model` changes the choice")
        XCTAssertEqual(e.trainer.maxEpochs, 4)
        XCTAssertEqual(e.seed, 5, "_self_ after the experiment: the primary's seed wins")
        XCTAssertEqual(loader.groups(), ["experiment", "model", "trainer"])
        XCTAssertEqual(loader.options(of: "trainer"), ["base", "fast"])

        let cyc = try scratchConfigs([
            "config.yaml": "defaults:\n  - trainer: a\n",
            "trainer/a.yaml": "defaults:\n  - b\n",
            "trainer/b.yaml": "defaults:\n  - a\n",
        ])
        XCTAssertEqual(configError { try ConfigLoader(configDir: cyc, environment: [:]).load() }?.kind, .composition)
    }

    func testInterpolation() throws {
        let dir = try scratchConfigs([
            "config.yaml": """
            name: exp-${seed}
            seed: 3
            run:
              dir: ${oc.env:OUT,/tmp/out}/${name}
              cache_dir: ${oc.env:CACHE}
            trainer:
              betas: ${trainer.extra}
            """
        ])
        let loader = ConfigLoader(configDir: dir, environment: ["CACHE": "/c"])
        XCTAssertEqual(configError { try loader.load() }?.kind, .interpolation, "trainer.extra is not a key")
        let c = try loader.load(overrides: ["trainer.betas=[0.5, 0.6]"]).config
        XCTAssertEqual(c.name, "exp-3")
        XCTAssertEqual(c.run.dir, "/tmp/out/exp-3")
        XCTAssertEqual(c.run.cacheDir, "/c")
    }

    func testInterpolationErrors() throws {
        let dir = try scratchConfigs([
            "config.yaml": "name: ${run.dir}\nrun:\n  dir: x/${name}\n  cache_dir: ${oc.env:NOPE}\n"
        ])
        let loader = ConfigLoader(configDir: dir, environment: [:])
        let e = configError { try loader.load(overrides: ["run.cache_dir=/c"]) }
        XCTAssertEqual(e?.kind, .interpolation)
        XCTAssertTrue(e?.description.contains("cycle") ?? false, e?.description ?? "")
        let env = configError { try loader.load(overrides: ["name=n"]) }
        XCTAssertTrue(env?.description.contains("NOPE") ?? false, env?.description ?? "")
        let missing = configError { try loader.load(overrides: ["name=n", "run.cache_dir=${run.cachedir}"]) }
        XCTAssertEqual(missing?.suggestion, "run.cache_dir")
        // A list reference keeps its type.
        let typed = try ConfigLoader(
            configDir: try scratchConfigs(["config.yaml": "trainer:\n  betas: [0.1, 0.2]\n"]), environment: [:]
        )
        .load(overrides: ["data.prompt=${trainer.betas}"])
        XCTAssertEqual(typed.config.data.prompt, .anyOf(["0.1", "0.2"]))
    }

    // MARK: Printing and hashing

    func testPrintedConfigRoundTrips() throws {
        for overrides in [
            [], ["experiment=kvasir/vlsm_dense_vlc", "data.prompt=[p1, p2]"], ["experiment=demo"],
            ["tuning=lora"], ["tuning=maple", "resume='/some/path: odd'"],
            ["name=yes", "data.root=007", "run.dir=' spaced '", "tuning=coop", "tuning.init=a photo of a"],
        ] {
            let r = try load(overrides)
            let back = try ConfigLoader.decode(
                yaml: r.yaml, source: "printed.yaml", environment: ["HOME": "/elsewhere"])
            XCTAssertEqual(back.config, r.config, "\(overrides)\n\(r.yaml)")
            XCTAssertEqual(back.yaml, r.yaml)
            XCTAssertEqual(back.configHash, r.configHash)
        }
        let r = try load(["name=yes", "data.root=007"])
        XCTAssertTrue(r.yaml.contains("name: \"yes\"\n"), r.yaml)
        XCTAssertTrue(r.yaml.contains("root: \"007\"\n"), r.yaml)
        XCTAssertTrue(r.yaml.hasPrefix("name: yes") == false)
        // Keys appear in the documented order.
        let keys = r.yaml.split(separator: "\n").filter { !$0.hasPrefix(" ") }.map { $0.split(separator: ":")[0] }
        XCTAssertEqual(
            keys, ["name", "seed", "resume", "data_root", "run", "model", "tuning", "data", "trainer", "comm"])
        // Sources as comments.
        XCTAssertTrue(try load(["trainer.lr=0.01"]).annotatedYAML.contains("lr: 0.01  # override 'trainer.lr=0.01'"))
    }

    func testHashIsStableAndCanonical() throws {
        XCTAssertEqual(ConfigSHA256.hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(ConfigSHA256.hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(
            ConfigSHA256.hex(String(repeating: "a", count: 1000)),
            "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
        let a = try load(["trainer.lr=1e-3", "seed=1"])
        let b = try load(["seed=1", "trainer.lr=0.001"])
        let c = try load(["trainer.lr=0.0011", "seed=1"])
        XCTAssertEqual(a.configHash, b.configHash, "spelling and order of overrides do not matter")
        XCTAssertNotEqual(a.configHash, c.configHash)
        XCTAssertEqual(a.configHash, try load(["trainer.lr=1e-3", "seed=1"]).configHash)
        XCTAssertEqual(a.configHash.count, 64)
        // The training hash ignores runtime-only settings.
        let d = try load([
            "trainer.lr=1e-3", "seed=1", "trainer.threads=4", "data.workers=7", "run.dir=/elsewhere", "resume=auto",
        ])
        XCTAssertNotEqual(a.configHash, d.configHash)
        XCTAssertEqual(a.trainingHash, d.trainingHash)
        XCTAssertNotEqual(a.trainingHash, c.trainingHash)
        // Precision changes what a step computes: a bf16 run is a different experiment.
        let bf16 = try load(["trainer.lr=1e-3", "seed=1", "trainer.precision=bf16"])
        XCTAssertEqual(bf16.config.trainer.precision, .bf16)
        XCTAssertEqual(a.config.trainer.precision, .fp32, "float32 unless asked")
        XCTAssertNotEqual(a.trainingHash, bf16.trainingHash)
        // Equal configs from different compositions hash equal.
        let viaExperiment = try load(["experiment=kvasir/vlsm_dense_vl"])
        let viaGroups = try load([
            "tuning=vlsm_dense_vl", "name=kvasir-vlsm_dense_vl", "data.target=soft", "data.resize=pil_bilinear",
            "trainer.seeds=[41,42,43]", "trainer.precision=bf16_if_available",
            "trainer.loss.compat_double_sigmoid=true",
        ])
        XCTAssertEqual(viaExperiment.configHash, viaGroups.configHash)
    }

    // MARK: Registry, batch sizes, discovery

    func testCustomRegistry() throws {
        let registry = TuningMethodRegistry(builtins: false)
        registry.register(
            TuningMethodFamily(
                name: "mine", summary: "test", architectures: [.clipseg],
                options: [
                    TuningOption("width", .int, default: .int(3), help: "w", minimum: 1),
                    TuningOption("mode", .string, default: .string("a"), help: "m", allowed: ["a", "b"]),
                ]
            ) { _ in ZeroShot() })
        let loader = ConfigLoader(configDir: ConfigTests.configDir, registry: registry, environment: [:])
        let c = try loader.load(overrides: ["tuning.method=mine", "tuning.mode=b"]).config
        XCTAssertEqual(try c.tuning.int("width"), 3)
        XCTAssertEqual(try c.tuning.string("mode"), "b")
        XCTAssertThrowsError(try c.tuning.int("mode"))
        XCTAssertThrowsError(try c.tuning.int("nothing"))
        XCTAssertEqual(
            configError { try loader.load(overrides: ["tuning.method=mine", "tuning.width=0"]) }?.path, "tuning.width")
        XCTAssertEqual(
            configError { try loader.load(overrides: ["tuning.method=mine", "tuning.mode=c"]) }?.suggestion, nil)
        XCTAssertEqual(configError { try loader.load() }?.kind, .unknownMethod, "decoder is not in this registry")
    }

    func testPerRankBatchSize() throws {
        let c = try load().config
        XCTAssertEqual(try c.perRankBatchSize(worldSize: 1), 32)
        XCTAssertEqual(try c.perRankBatchSize(worldSize: 2), 16)
        XCTAssertEqual(try c.globalBatchSize(worldSize: 4), 32)
        XCTAssertThrowsError(try c.perRankBatchSize(worldSize: 3))
        let acc = try load(["trainer.accumulate=2"]).config
        XCTAssertEqual(try acc.perRankBatchSize(worldSize: 2), 8)
        let perRank = try load(["trainer.global_batch_size=0", "data.batch_size=5"]).config
        XCTAssertEqual(try perRank.perRankBatchSize(worldSize: 3), 5)
        XCTAssertEqual(try perRank.globalBatchSize(worldSize: 3), 15)
    }

    func testConfigDirectoryDiscovery() throws {
        let fromSub = try ConfigLoader.findConfigDirectory(
            environment: [:], currentDirectory: ConfigTests.repoRoot.appendingPathComponent("Sources/VLTrain").path,
            executable: nil)
        XCTAssertEqual(fromSub.standardizedFileURL.path, ConfigTests.configDir.standardizedFileURL.path)
        let fromExe = try ConfigLoader.findConfigDirectory(
            environment: [:], currentDirectory: "/",
            executable: ConfigTests.repoRoot.appendingPathComponent(".build/release/vlseg"))
        XCTAssertEqual(fromExe.standardizedFileURL.path, ConfigTests.configDir.standardizedFileURL.path)
        XCTAssertThrowsError(
            try ConfigLoader.findConfigDirectory(environment: [:], currentDirectory: "/", executable: nil))
        XCTAssertThrowsError(try ConfigLoader.findConfigDirectory(explicit: "/nonexistent", environment: [:]))
        let env = try ConfigLoader.findConfigDirectory(
            environment: ["VLSEG_CONFIG_DIR": ConfigTests.configDir.path], currentDirectory: "/", executable: nil)
        XCTAssertEqual(env.path, ConfigTests.configDir.path)
    }

    /// The committed experiments are exactly what configs/generate.sh writes.
    func testGeneratedExperimentsAreUpToDate() throws {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-gen-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = [ConfigTests.configDir.appendingPathComponent("generate.sh").path, out.path]
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        let fm = FileManager.default
        var generated = 0
        for dataset in try fm.contentsOfDirectory(atPath: out.path) {
            for file in try fm.contentsOfDirectory(atPath: out.appendingPathComponent(dataset).path) {
                generated += 1
                let fresh = try String(contentsOf: out.appendingPathComponent("\(dataset)/\(file)"), encoding: .utf8)
                let committedURL = ConfigTests.configDir.appendingPathComponent("experiment/\(dataset)/\(file)")
                let committed = (try? String(contentsOf: committedURL, encoding: .utf8)) ?? "<missing>"
                XCTAssertEqual(
                    fresh, committed,
                    "configs/experiment/\(dataset)/\(file) differs from configs/generate.sh's output: run it and commit"
                )
            }
        }
        // Eight medical datasets x (8 VLSM-Adapter + 10 TuneVLSeg experiments), and TuneVLSeg's 10 for each
        // natural-domain dataset whose data config exists.
        let natural = ["cityscapes", "pascal_voc"].filter {
            FileManager.default.fileExists(atPath: ConfigTests.configDir.appendingPathComponent("data/\($0).yaml").path)
        }
        XCTAssertEqual(generated, 8 * 18 + 10 * natural.count)
        let committedCount = repoLoader().options(of: "experiment").filter { $0.contains("/") }.count
        XCTAssertEqual(committedCount, generated, "stale generated experiments in configs/experiment")
    }

    /// What a resume reports: training settings that changed, appeared or disappeared; settings that
    /// only change how the run executes (`runtimeOnlyKeys`) are not listed.
    func testTrainingChangesListOnlyTrainingSettings() throws {
        let old = """
            name: a
            seed: 1
            trainer:
              lr: 0.001
              max_steps: 10
              schedule: {name: cosine}
            data:
              workers: 2
              prompts: [p1, p2]
            """
        let new = """
            name: b
            seed: 1
            trainer:
              lr: 0.0005
              max_steps: 20
              schedule: {name: cosine, warmup: 5}
            data:
              workers: 4
              prompts: [p1]
            extra: true
            """
        let changes = try ResolvedConfig.trainingChanges(from: old, to: new)
        XCTAssertEqual(
            changes,
            [
                .init(key: "trainer.lr", old: "0.001", new: "0.0005"),
                .init(key: "trainer.schedule.warmup", old: nil, new: "5"),
                .init(key: "data.prompts", old: "[p1, p2]", new: "[p1]"),
                .init(key: "extra", old: nil, new: "true"),
            ])
        XCTAssertEqual(
            try ResolvedConfig.trainingChanges(from: new, to: old).map(\.key),
            ["trainer.lr", "data.prompts", "trainer.schedule.warmup", "extra"])
        XCTAssertEqual(try ResolvedConfig.trainingChanges(from: old, to: old), [])
    }
}
