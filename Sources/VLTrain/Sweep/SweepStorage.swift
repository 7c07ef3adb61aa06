import Foundation

/// The Optuna storage of a sweep: an SQLite file in the sweep directory by default (embedded, nothing to
/// start), or a database URL that several launches share (PostgreSQL on several machines).
///
/// A password never travels on a command line or into a file VLSeg writes: it comes from
/// `VLSEG_SWEEP_STORAGE_PASSWORD` or `sweep.storage_password_file` and is put into the URL only for
/// the driver's standard input; a password written in the URL itself works but is masked like the
/// others in everything printed (`masked`, `mask`).
public struct SweepStorage: Sendable, Equatable {
    /// The URL Optuna opens, password included: only for the driver's standard input.
    public let url: String
    /// The URL as it may be printed or written: the password replaced by `***`.
    public let masked: String
    /// The password as given and as written into the URL (percent-encoded), to mask in any text.
    let secrets: [String]

    public static let passwordVariable = "VLSEG_SWEEP_STORAGE_PASSWORD"
    public static let defaultFileName = "optuna.db"

    init(url: String, secrets: [String]) {
        self.url = url
        self.secrets = secrets.filter { !$0.isEmpty }
        var m = SweepStorage.maskingURL(url)
        for s in self.secrets { m = m.replacingOccurrences(of: s, with: "***") }
        masked = m
    }

    /// The storage `config` names (else the SQLite file in `sweepDirectory`), with the password from the
    /// environment or the password file put in.
    public static func resolve(
        _ config: SweepConfig, sweepDirectory: URL,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> SweepStorage {
        guard let given = config.storage, !given.isEmpty else {
            return SweepStorage(
                url: "sqlite:///" + sweepDirectory.appendingPathComponent(defaultFileName).path, secrets: [])
        }
        let inURL = userInfo(given)?.password
        guard given.contains("://") else {
            throw SweepError.storage(
                "sweep.storage must be a database URL (sqlite:///FILE, postgresql://USER@HOST/DB), found '\(SweepStorage(url: given, secrets: [inURL ?? ""]).masked)'"
            )
        }
        var secret: String? = nil
        if let file = config.storagePasswordFile, !file.isEmpty {
            let path = VLSegConfig.expandHome(file)
            guard let data = FileManager.default.contents(atPath: path) else {
                throw SweepError.storage("cannot read sweep.storage_password_file \(path)")
            }
            secret = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
                .first.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        } else if let env = environment[passwordVariable], !env.isEmpty {
            secret = env
        }
        guard let secret, !secret.isEmpty else { return SweepStorage(url: given, secrets: [inURL ?? ""]) }
        // The password goes after the user name: scheme://user:PASSWORD@host/...
        guard let info = userInfo(given), info.password == nil else {
            throw SweepError.storage(
                "sweep.storage \(SweepStorage(url: given, secrets: [inURL ?? ""]).masked) needs a user name and no password of its own to take the password from \(passwordVariable) or sweep.storage_password_file (scheme://USER@HOST/DB)"
            )
        }
        let encoded =
            secret.addingPercentEncoding(
                withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~")))
            ?? secret
        var url = given
        url.insert(contentsOf: ":" + encoded, at: info.userEnd)
        return SweepStorage(url: url, secrets: [secret, encoded])
    }

    /// `text` (a message from the driver, a database error) with every secret of this storage masked.
    public func mask(_ text: String) -> String {
        var out = text.replacingOccurrences(of: url, with: masked)
        for s in secrets { out = out.replacingOccurrences(of: s, with: "***") }
        return SweepStorage.maskingURL(out)
    }

    /// Where the user name ends in `scheme://user[:password]@host`, and the password when there is one.
    static func userInfo(_ url: String) -> (userEnd: String.Index, password: String?)? {
        guard let scheme = url.range(of: "://") else { return nil }
        let rest = url[scheme.upperBound...]
        let authorityEnd = rest.firstIndex(of: "/") ?? rest.endIndex
        guard let at = rest[..<authorityEnd].lastIndex(of: "@") else { return nil }
        let info = rest[..<at]
        if let colon = info.firstIndex(of: ":") {
            return (colon, String(info[info.index(after: colon)...]))
        }
        return (at, nil)
    }

    /// Replaces the password part of every `scheme://user:password@` in `text` with `***`.
    static func maskingURL(_ text: String) -> String {
        var out = ""
        var rest = Substring(text)
        while let scheme = rest.range(of: "://") {
            out += rest[..<scheme.upperBound]
            rest = rest[scheme.upperBound...]
            let end =
                rest.firstIndex { $0 == "/" || $0 == " " || $0 == "'" || $0 == "\"" || $0 == "\n" } ?? rest.endIndex
            let authority = rest[..<end]
            if let at = authority.lastIndex(of: "@"), let colon = authority[..<at].firstIndex(of: ":") {
                out += authority[...colon] + "***" + authority[at...]
            } else {
                out += authority
            }
            rest = rest[end...]
        }
        out += rest
        return out
    }
}
