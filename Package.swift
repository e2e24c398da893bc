// swift-tools-version:5.9
import PackageDescription

// On x86-64, kernels and the element-wise code of the models are built for AVX2 + FMA (Haswell
// and later): the default target is SSE2, where SIMD multiply-adds become calls to `fmaf`
// (see TOOLCHAIN.md). `-fno-math-errno` lets square roots vectorise. The AVX-512 micro-kernels
// have a module of their own, chosen at run time; `KernelsPortable` has no flags at all.
#if arch(x86_64)
let fastMath: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "haswell", "-Xcc", "-fno-math-errno"])]
let avx512: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "skylake-avx512", "-Xcc", "-fno-math-errno"])]
#else
let fastMath: [SwiftSetting] = [.unsafeFlags(["-Xcc", "-fno-math-errno"])]
let avx512: [SwiftSetting] = []
#endif

let package = Package(
    name: "aedist",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "aedist", targets: ["aedist"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-atomics", from: "1.3.0"),
    ],
    targets: [
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5",
                       providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // CPUID: which instruction sets this CPU (and OS) supports.
        .target(name: "CPUFeatures"),
        // Register tiles and the micro-kernel algorithms, inlined into each instruction-set module.
        .target(name: "RegisterTiles"),
        .target(name: "KernelsAVX512", dependencies: ["RegisterTiles"], swiftSettings: avx512),
        .target(name: "KernelsPortable", dependencies: ["RegisterTiles"]),
        // Matrix products (AVX2 micro-kernels, run-time choice of path) and element-wise kernels.
        .target(name: "Kernels", dependencies: ["CPUFeatures", "RegisterTiles", "KernelsAVX512", "KernelsPortable"],
                swiftSettings: fastMath),
        // Layers, losses, autoencoder and VAE, optimizers, random numbers.
        .target(name: "Models", dependencies: ["Kernels"], swiftSettings: fastMath),
        // HDF5 files: datasets, attributes, atomic writes; PNG files (deflated by zlib).
        .target(name: "Storage", dependencies: ["CHDF5", "CZlib"]),
        // TensorBoard event files (events.pb.swift is generated from Proto/events.proto and committed).
        .target(name: "TensorBoard", dependencies: ["Storage", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
                exclude: ["Proto"]),
        // Ranks and collectives: MPI and a single-process stand-in.
        .target(name: "Communication", dependencies: ["CMPI", .product(name: "Atomics", package: "swift-atomics")]),
        // Configuration, data loading, the training loop, checkpoints, evaluation.
        .target(name: "Training",
                dependencies: ["Kernels", "Models", "Storage", "Communication", "TensorBoard",
                               .product(name: "Yams", package: "Yams")],
                swiftSettings: fastMath),
        .executableTarget(name: "aedist",
                          dependencies: ["Training", "Kernels",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .testTarget(name: "KernelsTests", dependencies: ["Kernels", "RegisterTiles"], swiftSettings: fastMath),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "Kernels"], swiftSettings: fastMath),
        .testTarget(name: "StorageTests", dependencies: ["Storage"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Models", "Communication", "TensorBoard"]),
        .testTarget(name: "EndToEndTests", dependencies: ["Training", "Storage", "Kernels"]),
    ]
)
