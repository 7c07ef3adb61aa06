import Foundation
import XCTest

/// `launch/train` (mpirun with the right flags), the scripts' lint, and the multi-machine path through
/// network namespaces (`cluster/netns/`).
final class LaunchTrainTests: XCTestCase {
    var cores: Int { ProcessInfo.processInfo.activeProcessorCount }

    func requireMpirun() throws {
        guard ProcessRunner.which("mpirun") != nil else { throw XCTSkip("mpirun not installed") }
    }

    /// The acceptance check until `vlseg train` exists: any subcommand through launch/train on 2 ranks.
    func testLaunchTrainRunsEveryRank() throws {
        try requireMpirun()
        let r = try ProcessRunner.script(
            "launch/train", ["-n", "2", "--timeout", "90"],
            environment: ["VLSEG_BIN": ProcessRunner.vlsegPath, "VLSEG_COMMAND": "env"], timeout: 120)
        XCTAssertFalse(r.timedOut, r.output)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains(" 0 of 2 (local 0 of 2)"), r.output)
        XCTAssertTrue(r.output.contains(" 1 of 2 (local 1 of 2)"), r.output)
        XCTAssertFalse(r.output.contains("Prescott"), "OPENBLAS_CORETYPE reaches the ranks:\n\(r.output)")
    }

    func testLaunchTrainCommandLine() throws {
        try requireMpirun()
        let env = ["VLSEG_BIN": ProcessRunner.vlsegPath]
        let r = try ProcessRunner.script(
            "launch/train", ["-n", "2", "--print", "--", "experiment=demo"], environment: env)
        XCTAssertEqual(r.status, 0, r.output)
        let line = r.output
        for flag in [
            "--bind-to none", "--mca orte_abort_on_non_zero_status 1", "--mca odls_base_sigkill_timeout 2", "-np 2",
            "\(ProcessRunner.vlsegPath) train experiment=demo trainer.threads=\(max(1, cores / 2))",
        ] {
            XCTAssertTrue(line.contains(flag), "missing '\(flag)' in: \(line)")
        }
        XCTAssertEqual(line.contains("--allow-run-as-root"), getuid() == 0, line)
        XCTAssertEqual(line.contains("--mca mpi_yield_when_idle 1"), 2 >= cores, line)
        XCTAssertEqual(line.contains("--oversubscribe"), 2 > cores, line)

        // More ranks than cores: oversubscribe and yield; threads stay at least 1.
        let many = try ProcessRunner.script("launch/train", ["-n", "\(cores + 1)", "--print"], environment: env)
        XCTAssertTrue(many.output.contains("--oversubscribe"), many.output)
        XCTAssertTrue(many.output.contains("--mca mpi_yield_when_idle 1"), many.output)
        XCTAssertTrue(many.output.contains("trainer.threads=1"), many.output)

        // Threads given by the user are kept; other subcommands get no trainer override; the script
        // itself keeps the time (a timeout stops the job gracefully, see below).
        let given = try ProcessRunner.script(
            "launch/train", ["-n", "2", "--timeout", "30", "--print", "--", "trainer.threads=7"], environment: env)
        XCTAssertTrue(given.output.contains("trainer.threads=7"), given.output)
        XCTAssertFalse(given.output.contains("trainer.threads=\(max(1, cores / 2)) "), given.output)
        XCTAssertTrue(given.output.hasPrefix("mpirun "), given.output)
        let envCommand = try ProcessRunner.script(
            "launch/train", ["-n", "1", "--print"],
            environment: env.merging(["VLSEG_COMMAND": "bench gemm"]) { $1 })
        XCTAssertTrue(envCommand.output.contains("\(ProcessRunner.vlsegPath) bench gemm"), envCommand.output)
        XCTAssertFalse(envCommand.output.contains("trainer.threads"), envCommand.output)

        // A hostfile: its slots decide oversubscription; threads are left to each machine.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-hosts-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let hostfile = dir.appendingPathComponent("hosts")
        try "# two machines\nnodeA slots=2\nnodeB slots=2\n".write(to: hostfile, atomically: true, encoding: .utf8)
        let four = try ProcessRunner.script(
            "launch/train", ["-n", "4", "--hosts", hostfile.path, "--print"], environment: env)
        XCTAssertTrue(four.output.contains("--hostfile \(hostfile.path)"), four.output)
        XCTAssertFalse(four.output.contains("--oversubscribe"), four.output)
        XCTAssertFalse(four.output.contains("trainer.threads"), four.output)
        let five = try ProcessRunner.script(
            "launch/train", ["-n", "5", "--hosts", hostfile.path, "--print"], environment: env)
        XCTAssertTrue(five.output.contains("--oversubscribe"), five.output)
    }

    func testLaunchTrainRejectsBadArguments() throws {
        let env = ["VLSEG_BIN": ProcessRunner.vlsegPath]
        for args in [
            [], ["-n", "0"], ["-n", "2", "--timeout", "soon"], ["-n", "2", "experiment=demo"],
            ["-n", "2", "--hosts", "/nonexistent"],
        ] {
            let r = try ProcessRunner.script("launch/train", args, environment: env)
            XCTAssertEqual(r.status, 2, "\(args): \(r.output)")
            XCTAssertTrue(r.output.contains("[vlseg]"), r.output)
        }
        let help = try ProcessRunner.script("launch/train", ["--help"], environment: env)
        XCTAssertEqual(help.status, 0)
        XCTAssertTrue(help.output.contains("launch/train -n RANKS"), help.output)
    }

    /// --timeout ends a job that runs too long, with timeout's status 124 and a message (a command other
    /// than train has no checkpoint to write: its ranks end on the forwarded SIGUSR1).
    func testLaunchTrainTimeoutEndsTheJob() throws {
        try requireMpirun()
        let start = Date()
        let r = try ProcessRunner.script(
            "launch/train", ["-n", "2", "--timeout", "3", "--", "--seconds", "30"],
            environment: ["VLSEG_BIN": ProcessRunner.vlsegPath, "VLSEG_COMMAND": "bench gemm"], timeout: 90)
        let elapsed = Date().timeIntervalSince(start)
        XCTAssertFalse(r.timedOut, r.output)
        XCTAssertEqual(r.status, 124, r.output)
        XCTAssertTrue(r.output.contains("job stopped after its time limit of 3s"), r.output)
        XCTAssertLessThan(elapsed, 30, r.output)
    }

    /// Every shell script is shellcheck-clean (CI installs shellcheck through launch/common.sh).
    func testScriptsAreShellcheckClean() throws {
        guard let shellcheck = ProcessRunner.which("shellcheck") else {
            if ProcessInfo.processInfo.environment["CI"] != nil {
                XCTFail("shellcheck is not installed in CI (launch/common.sh installs it)")
                return
            }
            throw XCTSkip("shellcheck not installed (apt-get install shellcheck)")
        }
        let root = ProcessRunner.repoRoot
        let fm = FileManager.default
        var scripts: [String] = []
        for dir in ["launch", "cluster", ".ci", "configs"] {
            guard let e = fm.enumerator(atPath: root.appendingPathComponent(dir).path) else { continue }
            while let rel = e.nextObject() as? String {
                let path = root.appendingPathComponent(dir).appendingPathComponent(rel).path
                var isDir: ObjCBool = false
                guard fm.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue else { continue }
                let head = (try? String(contentsOfFile: path, encoding: .utf8))?.prefix(200) ?? ""
                if rel.hasSuffix(".sh") || rel.hasSuffix(".sbatch") || head.hasPrefix("#!/usr/bin/env bash")
                    || head.hasPrefix("#!/bin/bash")
                    || head.contains("shellcheck shell=bash")
                {
                    scripts.append(path)
                }
            }
        }
        for required in [
            "launch/train", "launch/common.sh", "launch/test", ".ci/run", "cluster/netns/run.sh",
            "cluster/slurm/train.sbatch", "configs/generate.sh",
        ] {
            XCTAssertTrue(scripts.contains(root.appendingPathComponent(required).path), "\(required) not linted")
        }
        let r = try ProcessRunner.run(shellcheck, scripts, timeout: 120, currentDirectory: root)
        XCTAssertEqual(r.status, 0, "shellcheck found problems:\n\(r.output)")
    }
}

/// Two simulated machines (network namespaces joined over veth and a bridge) running two ranks over TCP.
final class LaunchNetnsTests: XCTestCase {
    /// Skips, saying why, when this sandbox cannot make network namespaces.
    func requireNetworkNamespaces() throws {
        guard ProcessRunner.which("mpirun") != nil else { throw XCTSkip("mpirun not installed") }
        guard getuid() == 0 else {
            print("LaunchNetnsTests: skipped: network namespaces need root")
            throw XCTSkip("network namespaces need root")
        }
        guard let ip = ProcessRunner.which("ip") else {
            print("LaunchNetnsTests: skipped: the ip command (iproute2) is missing")
            throw XCTSkip("the ip command (iproute2) is missing")
        }
        let probe = "vlseg-probe-\(getpid())"
        let add = try ProcessRunner.run(ip, ["netns", "add", probe], timeout: 20)
        if add.status != 0 {
            print(
                "LaunchNetnsTests: skipped: this sandbox does not allow network namespaces (ip netns add: \(add.output.trimmingCharacters(in: .whitespacesAndNewlines)))"
            )
            throw XCTSkip("network namespaces not allowed here: \(add.output)")
        }
        _ = try ProcessRunner.run(ip, ["netns", "del", probe], timeout: 20)
    }

    func testTwoRanksInTwoNamespacesOverTCP() throws {
        try requireNetworkNamespaces()
        let prefix = "vlt\(getpid() % 100_000)"
        let env = [
            "VLSEG_BIN": ProcessRunner.vlsegPath, "VLSEG_NETNS_PREFIX": prefix, "VLSEG_NETNS_SUBNET": "10.231.0",
        ]
        defer { _ = try? ProcessRunner.script("cluster/netns/down.sh", [], environment: env, timeout: 30) }

        // Each rank on its own machine: local rank 0 of 1 on both.
        let r = try ProcessRunner.script(
            "cluster/netns/run.sh", ["-n", "2", "--timeout", "90"],
            environment: env.merging(["VLSEG_COMMAND": "env"]) { $1 }, timeout: 150)
        XCTAssertFalse(r.timedOut, r.output)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains(" 0 of 2 (local 0 of 1)"), r.output)
        XCTAssertTrue(r.output.contains(" 1 of 2 (local 0 of 1)"), r.output)
        XCTAssertTrue(r.output.contains("2 machine(s) up"), r.output)

        // Both ranks take part in a collective that can only travel over TCP between the namespaces.
        let a = try ProcessRunner.script(
            "cluster/netns/run.sh", ["-n", "2", "--timeout", "90", "--", "--mb", "1", "--iterations", "3"],
            environment: env.merging(["VLSEG_COMMAND": "bench allreduce"]) { $1 }, timeout: 150)
        XCTAssertEqual(a.status, 0, a.output)
        XCTAssertTrue(a.output.contains("over 2 rank(s)"), a.output)
        XCTAssertTrue(a.output.contains("verified"), a.output)

        // Nothing left behind.
        let list = try ProcessRunner.run(ProcessRunner.which("ip")!, ["netns", "list"], timeout: 20)
        XCTAssertFalse(list.output.contains("\(prefix)-"), list.output)
    }
}
