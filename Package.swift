// swift-tools-version:6.0
import PackageDescription

// Release builds of the numeric modules drop bounds checks on the hot unsafe-pointer loops.
let numericSettings: [SwiftSetting] = [
    .unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release)),
]

let package = Package(
    name: "VLSeg",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "vlseg", targets: ["vlseg"]),
        .library(name: "VLTensor", targets: ["VLTensor"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // System-library shims: a module map and a header, nothing else.
        .systemLibrary(name: "CMPI", pkgConfig: "ompi", providers: [.apt(["libopenmpi-dev"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CJPEG", pkgConfig: "libturbojpeg", providers: [.apt(["libturbojpeg0-dev"])]),

        // The transcendental array kernels, with an AVX2+FMA path chosen at run time.
        .target(name: "CVectorMath", cSettings: [.unsafeFlags(["-O3"])]),
        .target(name: "VLTensor", dependencies: ["COpenBLAS", "CVectorMath"], swiftSettings: numericSettings),
        // No -Ounchecked here: this module parses untrusted files (safetensors, PyTorch pickles and
        // zips, tokenizer JSON), where a missed check must trap rather than corrupt memory; its
        // numeric work happens in VLTensor.
        .target(
            name: "VLModels", dependencies: ["VLTensor"],
            // The CLIP vocabulary ships with the tool so `init-model` and the demo need no download.
            resources: [.copy("Resources/clip-tokenizer")]
        ),
        .target(name: "VLTuning", dependencies: ["VLTensor", "VLModels"], swiftSettings: numericSettings),
        .target(name: "VLDistributed", dependencies: ["CMPI"], swiftSettings: numericSettings),
        .target(name: "VLData", dependencies: ["CPNG", "CJPEG", "VLTensor", "VLModels"], swiftSettings: numericSettings),
        .target(
            name: "VLTrain",
            dependencies: ["VLTensor", "VLModels", "VLTuning", "VLData", "VLDistributed", .product(name: "Yams", package: "Yams")],
            swiftSettings: numericSettings
        ),
        .executableTarget(
            name: "vlseg",
            dependencies: [
                "VLTensor", "VLModels", "VLTuning", "VLDistributed", "VLData", "VLTrain",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: numericSettings
        ),

        // Shared test helpers (value comparison, finite-difference gradient checks, the fixtures in Tests/Fixtures).
        .target(name: "VLTestSupport", dependencies: ["VLTensor", "VLModels"], path: "Tests/VLTestSupport"),
        .testTarget(name: "VLTensorTests", dependencies: ["VLTensor", "VLTestSupport"]),
        .testTarget(name: "VLModelsTests", dependencies: ["VLModels", "VLTestSupport"]),
        .testTarget(name: "VLTuningTests", dependencies: ["VLTuning", "VLModels", "VLTestSupport"]),
        .testTarget(name: "VLTrainTests", dependencies: ["VLTrain", "VLTuning", "VLData", "VLTestSupport"]),
        .testTarget(name: "VLDistributedTests", dependencies: ["VLDistributed"]),
        .testTarget(name: "VLDataTests", dependencies: ["VLData", "VLModels", "VLTensor", "VLTestSupport"]),
        // Runs the built `vlseg` as a child process (and under mpirun); needs the executable built.
        .testTarget(name: "VLSegCLITests", dependencies: ["vlseg", "VLModels", "VLTensor", "VLData", "VLTrain", "VLTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
