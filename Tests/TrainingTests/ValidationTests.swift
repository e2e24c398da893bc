// data.validation as a fraction (the rows held out, in whole units, from the seed), the epoch order
// over the rows left, early stopping's bookkeeping, and the steering keys of a configuration.
import Foundation
@testable import Training
import XCTest

final class ValidationTests: XCTestCase {
    func rows(_ selection: RowSelection) -> [Int] { (0..<selection.count).map(selection.physical) }

    func testAFractionHoldsOutSeededRowsAndTrainingKeepsTheRestInFileOrder() {
        let held = HeldOutRows(rows: 1000, unit: 1, fraction: 0.1, seed: 3)
        let validation = rows(held.validation), training = rows(held.training)
        XCTAssertEqual(validation.count, 100)
        XCTAssertEqual(training.count, 900)
        XCTAssertEqual(validation, validation.sorted())
        XCTAssertEqual(training, training.sorted())
        XCTAssertEqual((validation + training).sorted(), Array(0..<1000), "the two parts must split the rows")
        // Spread over the file, not a block at one end.
        XCTAssertLessThan(validation.first!, 100)
        XCTAssertGreaterThan(validation.last!, 900)
        XCTAssertEqual(rows(HeldOutRows(rows: 1000, unit: 1, fraction: 0.1, seed: 3).validation), validation)
        XCTAssertNotEqual(rows(HeldOutRows(rows: 1000, unit: 1, fraction: 0.1, seed: 4).validation), validation)
    }

    func testBlocksAreHeldOutWhole() {
        // 1050 rows in units of 100: ten full blocks and one of 50; 0.3 of 11 units rounds to 3.
        for seed in UInt64(0)..<20 {
            let held = HeldOutRows(rows: 1050, unit: 100, fraction: 0.3, seed: seed)
            let validation = rows(held.validation), training = rows(held.training)
            XCTAssertEqual((validation + training).sorted(), Array(0..<1050))
            let blocks = Set(validation.map { $0 / 100 })
            XCTAssertEqual(blocks.count, 3)
            XCTAssertEqual(validation, blocks.sorted().flatMap { ($0 * 100)..<min(1050, ($0 + 1) * 100) }, "seed \(seed)")
            // Training's blocks are the others, in order, each whole: logical block j is one file block.
            for j in 0..<(training.count + 99) / 100 {
                let block = training[(j * 100)..<min(training.count, (j + 1) * 100)]
                XCTAssertEqual(Set(block.map { $0 / 100 }).count, 1, "seed \(seed): logical block \(j) spans file blocks")
            }
        }
        // At least one unit on each side, however small the fraction or the file.
        XCTAssertEqual(HeldOutRows(rows: 2, unit: 1, fraction: 0.01, seed: 0).validation.count, 1)
        XCTAssertEqual(HeldOutRows(rows: 3, unit: 1, fraction: 0.99, seed: 0).training.count, 1)
    }

    func testAnEpochVisitsEachTrainingRowOnceAndNoValidationRow() {
        let held = HeldOutRows(rows: 700, unit: 64, fraction: 0.2, seed: 9)
        let validation = Set(rows(held.validation))
        for kind in [ShuffleKind.rows, .blocks] {
            let order = EpochOrder(count: held.training.count, kind: kind, blockRows: 64, window: 3, seed: 9, selection: held.training)
            let visited = (0..<order.count).map { order.row(epoch: 2, position: $0) }
            XCTAssertEqual(visited.sorted(), rows(held.training), "\(kind)")
            XCTAssertTrue(validation.isDisjoint(with: visited))
        }
    }

    func testEarlyStoppingCountsEpochsWithoutAnImprovementBeyondMinDelta() {
        var state = EarlyStoppingState()
        let settings = EarlyStoppingSettings(patience: 2, minDelta: 0.1)
        XCTAssertTrue(state.observe(10, step: 5, epoch: 1, minDelta: 0.1))
        XCTAssertFalse(state.observe(9.95, step: 10, epoch: 2, minDelta: 0.1), "an improvement of no more than min_delta")
        XCTAssertFalse(state.exhausted(settings))
        XCTAssertTrue(state.observe(9.8, step: 15, epoch: 3, minDelta: 0.1))
        XCTAssertEqual(state.bestStep, 15)
        XCTAssertEqual(state.epochsSinceBest, 0)
        XCTAssertFalse(state.observe(9.9, step: 20, epoch: 4, minDelta: 0.1))
        XCTAssertFalse(state.observe(.nan, step: 25, epoch: 5, minDelta: 0.1), "NaN never improves")
        XCTAssertTrue(state.exhausted(settings))
        XCTAssertFalse(state.exhausted(nil), "without early stopping nothing stops")
        XCTAssertFalse(state.exhausted(EarlyStoppingSettings(patience: 3, minDelta: 0.1)), "a larger patience goes on")
        XCTAssertEqual(state.bestLoss, 9.8)
        XCTAssertEqual(state.bestEpoch, 3)
    }

    func testSteeringKeysParsePrintAndRefuseBadValues() throws {
        let off = try RunConfig.load(file: nil)
        XCTAssertNil(off.data.validation)
        XCTAssertNil(off.train.earlyStopping)
        XCTAssertTrue(off.yaml.contains("early_stopping: null"), off.yaml)
        let on = try RunConfig.load(file: nil, overrides: ["data.validation=0.1", "train.early_stopping={patience: 3}", "data.labels=train/digit"])
        XCTAssertEqual(on.data.validation, .fraction(0.1))
        XCTAssertEqual(on.train.earlyStopping, EarlyStoppingSettings(patience: 3, minDelta: 0))
        XCTAssertEqual(on.data.labels, "train/digit")
        XCTAssertEqual(try RunConfig.parse(yaml: on.yaml, origin: "test"), on)
        XCTAssertEqual(try RunConfig.parse(yaml: off.yaml, origin: "test"), off)
        let dataset = try RunConfig.load(file: nil, overrides: ["data.validation=valid/images", "train.early_stopping.min_delta=0.01"])
        XCTAssertEqual(dataset.data.validation, .dataset("valid/images"))
        XCTAssertEqual(dataset.train.earlyStopping, EarlyStoppingSettings(patience: 5, minDelta: 0.01), "one key turns it on")
        XCTAssertEqual(try RunConfig.parse(yaml: dataset.yaml, origin: "test"), dataset)
        let named = try RunConfig.load(file: nil, overrides: ["data.validation='0.5'"])
        XCTAssertEqual(named.data.validation, .dataset("0.5"), "a quoted number is a dataset's name")
        XCTAssertEqual(try RunConfig.parse(yaml: named.yaml, origin: "test"), named)
        // The last word wins: null after a key turns it off again, a key after null on.
        XCTAssertNil(try RunConfig.load(file: nil, overrides: ["train.early_stopping.patience=2", "train.early_stopping=null"]).train.earlyStopping)
        XCTAssertNotNil(try RunConfig.load(file: nil, overrides: ["train.early_stopping=null", "train.early_stopping.patience=2"]).train.earlyStopping)
        for (overrides, expected) in [
            (["data.validation=1.5"], "key 'data.validation': expected a fraction of the train rows in (0, 1), a dataset of data.path, or null, got '1.5'"),
            (["data.validation=[0.1]"], "key 'data.validation': expected a fraction"),
            (["train.early_stopping.patience=0"], "key 'train.early_stopping.patience': expected an integer ≥ 1"),
            (["train.early_stopping={patience: 2}", "data.test=null"], "it watches the validation loss (data.validation) or else the test loss (data.test), but both are null"),
            (["train.early_stopping.patiense=2"], "unknown key 'train.early_stopping.patiense' (did you mean 'train.early_stopping.patience'?)"),
        ] {
            var message = "no error"
            do { _ = try RunConfig.load(file: nil, overrides: overrides) } catch { message = "\(error)" }
            XCTAssertTrue(message.contains(expected), "\(overrides): \(message)")
        }
    }
}
