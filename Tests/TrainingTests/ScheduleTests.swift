// train.lr_schedule and model.kl_schedule: their values by step, and their configuration keys.
@testable import Training
import XCTest

final class ScheduleTests: XCTestCase {
    func testCosineWarmsUpThenFallsToTheMinimumAtTheLastStep() {
        var s = LearningRateSchedule()
        s.kind = .cosine; s.warmupSteps = 10; s.minLR = 1e-4
        XCTAssertEqual(s.rate(base: 1e-2, step: 0, totalSteps: 111), 1e-3, accuracy: 1e-9)
        XCTAssertEqual(s.rate(base: 1e-2, step: 9, totalSteps: 111), 1e-2, accuracy: 1e-9)
        XCTAssertEqual(s.rate(base: 1e-2, step: 10, totalSteps: 111), 1e-2, accuracy: 1e-9)
        XCTAssertEqual(s.rate(base: 1e-2, step: 60, totalSteps: 111), (1e-2 + 1e-4) / 2, accuracy: 1e-7)
        XCTAssertEqual(s.rate(base: 1e-2, step: 110, totalSteps: 111), 1e-4, accuracy: 1e-9)
        let rates = (10..<111).map { s.rate(base: 1e-2, step: $0, totalSteps: 111) }
        XCTAssertEqual(rates, rates.sorted(by: >), "cosine decay is not monotone")
    }

    func testStepDecayAndConstant() {
        var s = LearningRateSchedule()
        XCTAssertEqual(s.rate(base: 0.1, step: 12345, totalSteps: 20000), 0.1)
        s.kind = .step; s.every = 100; s.factor = 0.5
        XCTAssertEqual(s.rate(base: 0.1, step: 99, totalSteps: 1000), 0.1)
        XCTAssertEqual(s.rate(base: 0.1, step: 100, totalSteps: 1000), 0.05)
        XCTAssertEqual(s.rate(base: 0.1, step: 350, totalSteps: 1000), 0.0125, accuracy: 1e-9)
    }

    func testKLWarmUpAndCycles() {
        var k = KLSchedule()
        XCTAssertEqual(k.factor(step: 7), 1)
        k.kind = .linear; k.warmupSteps = 4
        XCTAssertEqual((0..<6).map { k.factor(step: $0) }, [0.25, 0.5, 0.75, 1, 1, 1])
        k.kind = .cyclical; k.period = 4; k.ramp = 0.5
        XCTAssertEqual((0..<8).map { k.factor(step: $0) }, [0.5, 1, 1, 1, 0.5, 1, 1, 1])
    }

    func testConfigurationKeysAndErrors() throws {
        let c = try RunConfig.load(file: nil, overrides: ["train.lr_schedule={kind: cosine, warmup_steps: 5, min_lr: 0.0001}",
                                                          "model.kl_schedule.kind=linear"])
        XCTAssertEqual(c.train.lrSchedule.kind, .cosine)
        XCTAssertEqual(c.train.lrSchedule.warmupSteps, 5)
        XCTAssertEqual(c.train.klSchedule.kind, .linear)
        XCTAssertEqual(try RunConfig.parse(yaml: c.yaml, origin: "test"), c, "the resolved YAML does not read back to the same schedules")
        XCTAssertThrowsError(try RunConfig.load(file: nil, overrides: ["train.lr_schedule.kind=exponential"])) {
            XCTAssertTrue("\($0)".contains("train.lr_schedule.kind") && "\($0)".contains("constant | cosine | step"), "\($0)")
        }
        XCTAssertThrowsError(try RunConfig.load(file: nil, overrides: ["model.kl_schedule.ramp=2"])) {
            XCTAssertTrue("\($0)".contains("model.kl_schedule.ramp"), "\($0)")
        }
    }
}
