import Foundation
import VLTuning

/// Checks a search space against the experiment before any trial runs, so a typo or an impossible range
/// costs one line, not a sweep of failed trials:
/// - the key must exist in the composed config (as an override would have to);
/// - a `tuning.*` key must be an option of the method, of a matching type, with the whole range inside the
///   option's declared bounds (`TuningMethodFamily`'s schema: minimum, allowed values);
/// - the config resolved with each end of a range and each choice must pass the config's own checks
///   (`VLSegConfig.problems`, the tuning option checks), which speak for every other key.
public enum SweepSpaceCheck {
    /// Throws the first problem as a `ConfigError` naming the key and the space's file line.
    public static func check(
        _ sweep: SweepConfig, resolved: ResolvedConfig, loader: ConfigLoader, overrides: [String]
    ) throws {
        let paths = resolved.tree.allPaths()
        var seen = Set<String>()
        for p in sweep.parameters {
            guard seen.insert(p.key).inserted else {
                throw ConfigError(.invalidValue, path: p.key, message: "searched twice", source: p.source)
            }
            guard resolved.text(at: p.key) != nil,
                resolved.tree.node(at: p.key.split(separator: ".").map(String.init))?.isMap != true
            else {
                throw ConfigError(
                    .unknownKey, path: p.key,
                    message: "the sweep space searches a key the experiment's config does not have",
                    source: p.source, suggestion: ConfigSuggest.nearest(p.key, in: paths))
            }
            if p.key.hasPrefix("tuning."), p.key != "tuning.method" {
                try checkTuningOption(p, resolved: resolved, registry: loader.registry)
            }
            for value in p.distribution.probes {
                do {
                    _ = try loader.load(overrides: overrides + ["\(p.key)=\(value.overrideText)"])
                } catch let error as ConfigError {
                    throw ConfigError(
                        .invalidValue, path: p.key,
                        message:
                            "\(p.distribution.summary) includes \(value), which the config refuses: \(error.message)",
                        source: p.source)
                } catch {
                    throw ConfigError(
                        .invalidValue, path: p.key,
                        message: "\(p.distribution.summary) includes \(value), which the config refuses: \(error)",
                        source: p.source)
                }
            }
        }
    }

    static func checkTuningOption(_ p: SweepParameter, resolved: ResolvedConfig, registry: TuningMethodRegistry) throws
    {
        let method = resolved.config.tuning.method
        let name = String(p.key.dropFirst("tuning.".count))
        guard let schema = registry.schema(named: method), let option = schema.option(name) else {
            throw ConfigError(
                .unknownKey, path: p.key, message: "method \(method) has no option '\(name)'", source: p.source,
                suggestion: registry.schema(named: method).flatMap {
                    ConfigSuggest.nearest(name, in: $0.options.map(\.name)).map { "tuning.\($0)" }
                })
        }
        func refuse(_ message: String) -> ConfigError {
            ConfigError(.invalidValue, path: p.key, message: message, source: p.source)
        }
        switch (option.kind, p.distribution) {
        case (.int, .float):
            throw refuse("option \(name) of \(method) is an integer: search it with type: int or categorical")
        case (.int, .int), (.double, .int), (.double, .float), (_, .categorical): break
        default:
            throw refuse("option \(name) of \(method) is a \(option.kind.rawValue): search it with type: categorical")
        }
        if let minimum = option.minimum, let minimumText = option.minimumText {
            let low: Double?
            switch p.distribution {
            case let .float(l, _, _, _): low = l
            case let .int(l, _, _, _): low = Double(l)
            case let .categorical(choices): low = choices.compactMap(\.doubleValue).min()
            }
            if let low, low < minimum {
                throw refuse(
                    "\(p.distribution.summary) goes below the option's minimum \(minimumText) (\(method): \(option.help))"
                )
            }
        }
        // Every value must also pass the option's declared type, allowed values and own check.
        for value in p.distribution.probes {
            do { _ = try option.validated(value, method: method) } catch {
                throw refuse("\(p.distribution.summary) includes \(value): \(error)")
            }
        }
    }
}
