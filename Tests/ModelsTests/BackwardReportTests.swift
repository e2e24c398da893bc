// What backward reports while it runs (the step sends each reported range across ranks at once):
// every range is final when reported, the ranges tile the buffer in the announced order, and
// cutting the last layer's weight gradient into row blocks changes no bit.

import XCTest
import Kernels
@testable import Models

final class BackwardReportTests: XCTestCase {
    // Wide enough last layers (40, 24 and 17 outputs) for several 6-row blocks, one of them short.
    let specs: [ModelSpec] = [
        makeSpec(.vae, inputs: 30, encoder: [40, 12], latent: 4, activation: .relu, output: .bernoulli),
        makeSpec(.ae, inputs: 20, encoder: [24], latent: 3, activation: .tanh, output: .gaussian, l1: 0.05),
        makeSpec(.ae, inputs: 17, encoder: [], latent: 17, activation: .tanh, output: .bernoulli),
    ]

    func testReportedRangesAreFinalAndTileTheBufferInOrder() {
        for spec in specs {
            for blocks in [1, 3, 4, 9] {
                let f = Fixture(spec, rows: 8)
                let plain = f.analyticGradient(chunk: 4, scale: 0.25)
                f.forward()
                // NaN everywhere first: a range reported before it is written would show NaNs.
                f.gradients.pointer.update(repeating: .nan, count: f.gradients.count)
                var reported: [Range<Int>] = [], snapshots: [[Float]] = [], pauses = 0
                let g = f.gradients.pointer
                f.model.backward(f.parameters, f.gradients, f.ws, rows: 8, chunk: 4, scale: 0.25, pool: f.pool,
                                 lastLayerBlocks: blocks) { event in
                    switch event {
                    case .gradientsFinal(let range):
                        reported.append(range)
                        snapshots.append(Array(UnsafeBufferPointer(start: g + range.lowerBound, count: range.count)))
                    case .betweenProducts:
                        pauses += 1
                    }
                }
                let name = "\(spec.kind) encoder \(spec.encoder) blocks \(blocks)"
                XCTAssertEqual(reported, f.model.finalGradientRanges(lastLayerBlocks: blocks), name)
                // Descending and contiguous from the end of the buffer down to 0.
                var end = f.model.parameterCount
                for range in reported {
                    XCTAssertEqual(range.upperBound, end, name)
                    XCTAssertFalse(range.isEmpty, name)
                    end = range.lowerBound
                }
                XCTAssertEqual(end, 0, name)
                let final = f.gradients.array
                for (range, snapshot) in zip(reported, snapshots) {
                    let changed = zip(snapshot, final[range]).filter { $0.bitPattern != $1.bitPattern }.count
                    XCTAssertEqual(changed, 0, "\(name): \(range) changed after it was reported")
                }
                let differing = zip(final, plain).filter { $0.bitPattern != $1.bitPattern }.count
                XCTAssertEqual(differing, 0, "\(name): row blocks changed the gradient")
                // One pause after each input-gradient product: every layer but the last.
                XCTAssertEqual(pauses, f.model.layers.count - 1, name)
                // The last layer really was cut (blocks of 6 rows).
                let last = f.model.layers[0].output.count
                let expectedBlocks = Set((0...blocks).map { Dense.weightBlockBoundary($0, of: blocks, rows: last) }).count - 1
                XCTAssertEqual(reported.count, f.model.layers.count - 1 + expectedBlocks, name)
                if blocks > 1 { XCTAssertGreaterThan(expectedBlocks, 1, name) }
            }
        }
    }

    func testBlockBoundariesAreOrderedMultiplesOfTheTileHeight() {
        for rows in [1, 7, 8, 17, 40, 512] {
            for blocks in 1...9 {
                let bounds = (0...blocks).map { Dense.weightBlockBoundary($0, of: blocks, rows: rows) }
                XCTAssertEqual(bounds.first, 0)
                XCTAssertEqual(bounds.last, rows)
                XCTAssertEqual(bounds, bounds.sorted())
                for b in bounds { XCTAssert(b % productRowTile == 0 || b == rows, "rows \(rows) blocks \(blocks): \(bounds)") }
            }
        }
        XCTAssertEqual((0...4).map { Dense.weightBlockBoundary($0, of: 4, rows: 512) }, [0, 132, 258, 384, 512])
    }
}
