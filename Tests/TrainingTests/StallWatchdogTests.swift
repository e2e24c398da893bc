import Communication
import XCTest
@testable import Training

/// What the watchdog's message says about the other ranks, from their roll-call answers (the
/// answers themselves travel over UDP between real ranks in FaultTests and MultiHostTests).
final class StallWatchdogTests: XCTestCase {
    let peers = (0..<4).map { RollCall.Peer(host: "node\($0 / 2)", port: 1, addresses: []) }
    let step = "the training step (its exchange with every rank)"

    func testRanksThatDoNotAnswerOrAreElsewhereAreNamedAndTheOthersAreNot() {
        let answers = [
            1: RankReport(rank: 1, operation: step, step: 41, seconds: 70),                  // waiting here too
            2: RankReport(rank: 2, operation: step, step: 40, seconds: 95),                  // still in the step before
            // rank 3: no answer
        ]
        let text = StallWatchdog.notArrived(answers, peers: peers, rank: 0, operation: step, step: 41).text
        XCTAssertEqual(text, "not arrived, as far as this rank can tell: rank 2 on host node1 (in \(step) of step 41 for 95 s), "
                           + "rank 3 on host node1 (no answer: stopped, or its host or the network to it down)")
    }

    func testARankThatLeftWaitingInTheSameOperationHasArrived() {
        var answers: [Int: RankReport] = [:]
        for r in 1..<4 { answers[r] = RankReport(rank: r, operation: step, step: 7, seconds: 61, leaving: r == 2) }
        XCTAssertEqual(StallWatchdog.notArrived(answers, peers: peers, rank: 0, operation: step, step: 7).text,
                       "every other rank answers and waits in the same operation, so the messages between the ranks are not getting through")
        answers[3] = RankReport(rank: 3, operation: "", step: 6, seconds: 0)
        XCTAssertEqual(StallWatchdog.notArrived(answers, peers: peers, rank: 0, operation: step, step: 7).text,
                       "not arrived, as far as this rank can tell: rank 3 on host node1 (between operations after step 7)")
    }

    func testALongListIsCut() {
        let many = (0..<20).map { RollCall.Peer(host: "n\($0)", port: 1, addresses: []) }
        let (text, ranks) = StallWatchdog.notArrived([:], peers: many, rank: 5, operation: step, step: 0)
        XCTAssertTrue(text.hasSuffix(" and 11 more"), text)
        XCTAssertFalse(text.contains("rank 5 "), text)
        XCTAssertEqual(ranks, (0..<20).filter { $0 != 5 })
    }

    /// Open MPI continues a stopped rank while it ends the job, so a rank that asks after the first
    /// one left may get an answer from it: the first one's list still names it.
    func testARankThatAnotherFoundMissingIsNamedEvenWhenItAnswersLater() {
        let answers = [
            1: RankReport(rank: 1, operation: step, step: 7, seconds: 9),
            2: RankReport(rank: 2, operation: step, step: 7, seconds: 8, leaving: true, absent: [1]),
            3: RankReport(rank: 3, operation: step, step: 7, seconds: 8),
        ]
        let (text, ranks) = StallWatchdog.notArrived(answers, peers: peers, rank: 0, operation: step, step: 7)
        XCTAssertEqual(text, "not arrived, as far as this rank can tell: rank 1 on host node0 (did not answer rank 2)")
        XCTAssertEqual(ranks, [1])
        // Continued while it still waited for the checkpoint write where it was stopped: both are said.
        var behind = answers
        behind[1] = RankReport(rank: 1, operation: "the checkpoint write", step: 6, seconds: 7)
        XCTAssertEqual(StallWatchdog.notArrived(behind, peers: peers, rank: 0, operation: step, step: 7).text,
                       "not arrived, as far as this rank can tell: rank 1 on host node0 (in the checkpoint write of step 7 for 7 s; did not answer rank 2)")
    }

    /// The bounds: automatic is the larger of 60 s and 20 times the slowest step, times the steps'
    /// worth an operation covers; a checkpoint write has its own (10 minutes before the first), so
    /// that a slow file system does not trip a short train.stall_timeout. (Large values only: the
    /// watchdog's thread runs in this process and would end it.)
    func testTheAutomaticBoundFollowsTheSlowestStepAndCheckpointWritesHaveTheirOwn() {
        let automatic = StallWatchdog(timeout: nil, rank: 0)
        XCTAssertEqual(automatic.limit, 60)
        automatic.begin("the training step", step: 0)
        automatic.end(stepSeconds: 4.5)
        XCTAssertEqual(automatic.limit, 90)
        automatic.begin("the test evaluation", step: 1, steps: 10)
        XCTAssertEqual(automatic.limit, 900)
        automatic.end()
        let configured = StallWatchdog(timeout: 5, rank: 0)
        configured.begin("the training step", step: 0)
        configured.end(stepSeconds: 1)
        XCTAssertEqual(configured.limit, 5)
        configured.beginCheckpoint(step: 0)
        XCTAssertEqual(configured.limit, 600)
        configured.end(checkpoint: "step-1.h5")
        configured.begin("the training step", step: 1)
        XCTAssertEqual(configured.limit, 5, "the write's bound outlived the write")
        configured.end()
    }

    /// Loading data at start-up, logging and the time between operations are not watched: a
    /// watchdog with a tiny bound that watches nothing does not fire (if it did, it would end this
    /// test process with status 69, failing the suite).
    func testNothingIsWatchedOutsideAnOperation() {
        let watchdog = StallWatchdog(timeout: 0.05, rank: 0)
        Thread.sleep(forTimeInterval: 0.6)
        watchdog.begin("the training step", step: 0)
        watchdog.end(stepSeconds: 0.001)
        Thread.sleep(forTimeInterval: 0.6)
        XCTAssertEqual(watchdog.limit, 0.05)
    }
}
