// swift-tools-version:5.9
import PackageDescription

// Kernels and the element-wise code of the models are built for AVX2 + FMA (Haswell and later):
// the default x86-64 target is SSE2, where SIMD multiply-adds become calls to `fmaf`
// (see TOOLCHAIN.md). `-fno-math-errno` lets square roots vectorise.
let fastMath: [SwiftSetting] = [
    .unsafeFlags(["-target-cpu", "haswell", "-Xcc", "-fno-math-errno"]),
]

let package = Package(
    name: "aedist",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "aedist", targets: ["aedist"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5",
                       providers: [.apt(["libhdf5-dev"])]),
        // Matrix products and element-wise kernels on raw buffers.
        .target(name: "Kernels", swiftSettings: fastMath),
        // Layers, losses, autoencoder and VAE, optimizers, random numbers.
        .target(name: "Models", dependencies: ["Kernels"], swiftSettings: fastMath),
        // HDF5 files: datasets, attributes, atomic writes.
        .target(name: "Storage", dependencies: ["CHDF5"]),
        // Ranks and collectives: MPI and a single-process stand-in.
        .target(name: "Communication", dependencies: ["CMPI"]),
        // Configuration, data loading, the training loop, checkpoints, evaluation.
        .target(name: "Training",
                dependencies: ["Kernels", "Models", "Storage", "Communication",
                               .product(name: "Yams", package: "Yams")],
                swiftSettings: fastMath),
        .executableTarget(name: "aedist",
                          dependencies: ["Training",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .testTarget(name: "KernelsTests", dependencies: ["Kernels"], swiftSettings: fastMath),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "Kernels"], swiftSettings: fastMath),
        .testTarget(name: "StorageTests", dependencies: ["Storage"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Models", "Communication"]),
        .testTarget(name: "EndToEndTests", dependencies: ["Training", "Storage"]),
    ]
)
