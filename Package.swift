// swift-tools-version:6.0
import PackageDescription

// Release builds of the numeric modules drop bounds checks on the hot unsafe-pointer loops.
let numericSettings: [SwiftSetting] = [
    .unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))
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
        // TensorBoard's event protocol buffers; the generated code is committed (launch/protos).
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
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
        // No -Ounchecked in VLTokenizer and VLModels: they parse untrusted files (tokenizer JSON,
        // safetensors, PyTorch pickles and zips), where a missed check must trap rather than corrupt
        // memory; their numeric work happens in VLTensor.
        // The CLIP vocabulary ships with the tool so `init-model` and the demo need no download.
        .target(name: "VLTokenizer", resources: [.copy("Resources/clip-tokenizer")]),
        .target(name: "VLModels", dependencies: ["VLTensor", "VLTokenizer"]),
        .target(
            name: "VLTuning", dependencies: ["VLTensor", "VLTokenizer", "VLModels"], swiftSettings: numericSettings),
        .target(name: "VLDistributed", dependencies: ["CMPI"], swiftSettings: numericSettings),
        .target(
            name: "VLData", dependencies: ["CPNG", "CJPEG", "VLTensor", "VLTokenizer"], swiftSettings: numericSettings),
        .target(
            name: "VLTrain",
            dependencies: [
                "VLTensor", "VLTokenizer", "VLModels", "VLTuning", "VLData", "VLDistributed",
                .product(name: "Yams", package: "Yams"), .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: numericSettings
        ),
        .executableTarget(
            name: "vlseg",
            dependencies: [
                "VLTensor", "VLTokenizer", "VLModels", "VLTuning", "VLDistributed", "VLData", "VLTrain",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: numericSettings,
            plugins: ["BuildInfo"]
        ),
        // Writes the git commit into the `vlseg` target for `--version`.
        .plugin(name: "BuildInfo", capability: .buildTool()),

        // Shared test helpers (value comparison, finite-difference gradient checks, the fixtures in Tests/Fixtures).
        .target(
            name: "VLTestSupport", dependencies: ["VLTensor", "VLTokenizer", "VLModels"], path: "Tests/VLTestSupport"),
        .testTarget(name: "VLTokenizerTests", dependencies: ["VLTokenizer", "VLTestSupport"]),
        .testTarget(name: "VLTensorTests", dependencies: ["VLTensor", "VLTestSupport"]),
        .testTarget(name: "VLModelsTests", dependencies: ["VLModels", "VLTestSupport"]),
        .testTarget(name: "VLTuningTests", dependencies: ["VLTuning", "VLModels", "VLTokenizer", "VLTestSupport"]),
        .testTarget(
            name: "VLTrainTests", dependencies: ["VLTrain", "VLTuning", "VLData", "VLTokenizer", "VLTestSupport"]),
        .testTarget(name: "VLDistributedTests", dependencies: ["VLDistributed"]),
        .testTarget(
            name: "VLDataTests", dependencies: ["VLData", "VLModels", "VLTokenizer", "VLTensor", "VLTestSupport"]),
        // Runs the built `vlseg` as a child process (and under mpirun); needs the executable built.
        .testTarget(
            name: "VLSegCLITests",
            dependencies: ["vlseg", "VLTokenizer", "VLModels", "VLTensor", "VLData", "VLTrain", "VLTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
