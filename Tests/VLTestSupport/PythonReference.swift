import Foundation

/// Runs a short Python script as the independent reference of a test (Pillow, numpy: what the
/// Python pipelines of the papers use). `launch/test` installs the packages; a missing interpreter
/// or package fails the test with Python's own message rather than skipping it.
public enum PythonReference {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Runs `python3 -c script args...`, returns its standard output; throws with its standard error
    /// when it fails or runs past `timeout` seconds.
    public static func run(_ script: String, arguments: [String] = [], timeout: Double = 120) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script] + arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Read both pipes while the process runs, so a large output cannot block it.
        let group = DispatchGroup()
        nonisolated(unsafe) var stdout = Data(), stderr = Data()
        group.enter()
        DispatchQueue.global().async {
            stdout = out.fileHandleForReading.readDataToEndOfFile(); group.leave()
        }
        group.enter()
        DispatchQueue.global().async {
            stderr = err.fileHandleForReading.readDataToEndOfFile(); group.leave()
        }
        if group.wait(timeout: .now() + timeout) == .timedOut {
            process.terminate()
            throw Failure(description: "python3 reference script ran past \(Int(timeout)) s")
        }
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw Failure(
                description: "python3 reference script failed (status \(process.terminationStatus)): "
                    + String(decoding: stderr, as: UTF8.self))
        }
        return String(decoding: stdout, as: UTF8.self)
    }
}
