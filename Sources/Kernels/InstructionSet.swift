// Which micro-kernels a pool runs, chosen at run time from what the CPU reports, so one binary is
// fast on AVX-512 machines and still runs on AVX2-only ones. Every path computes the same bits
// (RegisterTiles: one FMA chain per element in k order), so the choice never changes results.
import CPUFeatures
import Foundation
import KernelsPortable
import RegisterTiles
#if arch(x86_64)
import KernelsAVX512
#endif

public enum InstructionSet: String, CaseIterable, Sendable {
    /// No vector extensions assumed (see KernelsPortable).
    case portable
    /// AVX2 + FMA: 6 × 16 tiles in ymm registers.
    case avx2
    /// AVX-512: 6 × 32 tiles in zmm registers.
    case avx512

    /// The environment variable that overrides the choice (for comparisons and tests).
    public static let environmentKey = "AEDIST_KERNELS"

    /// The sets this CPU can run, slowest first.
    public static let supported: [InstructionSet] = {
        var sets: [InstructionSet] = [.portable]
        #if arch(x86_64)
        let avx2 = aedist_cpu_has_avx2_fma() != 0
        if avx2 { sets.append(.avx2) }
        if avx2 && aedist_cpu_has_avx512() != 0 { sets.append(.avx512) }
        #endif
        return sets
    }()

    /// The fastest supported set.
    public static var best: InstructionSet { supported.last! }

    /// The set named by AEDIST_KERNELS, or the best supported one when it is unset or "auto".
    public static func chosen(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> InstructionSet {
        guard let name = environment[environmentKey], !name.isEmpty, name != "auto" else { return best }
        guard let set = InstructionSet(rawValue: name) else {
            let names = (["auto"] + allCases.map(\.rawValue)).joined(separator: ", ")
            throw InstructionSetError("\(environmentKey)=\(name) is not one of \(names)")
        }
        guard supported.contains(set) else {
            throw InstructionSetError("\(environmentKey)=\(name): this CPU supports only "
                                      + supported.map(\.rawValue).joined(separator: ", "))
        }
        return set
    }

    /// The micro-kernels of this set.
    var routines: TileRoutines {
        switch self {
        case .portable: return PortableKernels.routines
        #if arch(x86_64)
        case .avx2: return AVX2Kernels.routines
        case .avx512: return AVX512Kernels.routines
        #else
        case .avx2, .avx512: preconditionFailure("\(self) kernels exist only on x86-64")
        #endif
        }
    }
}

public struct InstructionSetError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

#if arch(x86_64)
/// The AVX2 path: the tiles compiled in this module, which is built for AVX2 + FMA.
enum AVX2Kernels {
    static let routines = TileRoutines(wide: nil, full: TileKernel(Tile.self), half: TileKernel(HalfTile.self))
}
#endif
