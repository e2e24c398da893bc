// `aedist report`: the page and its PNGs from a real run, rendered by a real headless browser (the
// screenshot must show the embedded pictures: the curves' and the latent map's colours), a note in
// place of the pictures when the data file is not there, and a clear error for a folder that is
// not a run directory.
import Foundation
import XCTest

final class ReportTests: XCTestCase {
    /// The headless browser Debian packages: chromium-headless-shell, else chromium.
    var browser: String? {
        ["/usr/bin/chromium-headless-shell", "/usr/bin/chromium"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    func testTheReportOfARunRendersInABrowserWithItsPictures() throws {
        try TestTools.require(["sh", "-c", "command -v chromium-headless-shell || command -v chromium"], "a headless chromium")
        let root = Launcher.temporaryDirectory("report")
        defer { try? FileManager.default.removeItem(at: root) }
        let run = root.appendingPathComponent("run")
        let trained = try Launcher.run(smallRun + ["--set", "data.validation=0.2", "--set", "train.epochs=3", "--threads", "1", "--run-dir", run.path],
                                       timeout: 180)
        XCTAssertEqual(trained.status, 0, trained.stderr)
        let r = try Launcher.run(["report", run.path], timeout: 120)
        XCTAssertEqual(r.status, 0, r.stderr)
        let page = run.appendingPathComponent("report/index.html")
        XCTAssertEqual(r.stdout, "report: \(page.path) (7 pictures)\n")
        let pictures = ["loss", "reconstruction", "kl", "reconstructions", "samples", "interpolation", "latent-map"]
        for name in pictures {
            let data = try Data(contentsOf: run.appendingPathComponent("report/\(name).png"))
            XCTAssertEqual(Array(data.prefix(4)), [0x89, 0x50, 0x4E, 0x47], name)
        }
        // Self-contained: every picture is in the page itself, nothing is fetched from elsewhere.
        let html = try String(contentsOf: page, encoding: .utf8)
        XCTAssertEqual(html.components(separatedBy: "<img src=\"data:image/png;base64,").count - 1, pictures.count)
        XCTAssertFalse(html.contains("http://") || html.contains("https://") || html.contains("<script"))
        XCTAssertTrue(html.contains("<th>status</th><td>completed</td>"), "the summary")
        XCTAssertTrue(html.contains("validation: 0.2"), "the configuration")

        // The page copied alone elsewhere (as to a laptop), rendered by chromium to a PNG.
        let copy = root.appendingPathComponent("copied.html"), shot = root.appendingPathComponent("shot.png")
        try FileManager.default.copyItem(at: page, to: copy)
        let chromium = Process()
        chromium.executableURL = URL(fileURLWithPath: try XCTUnwrap(browser))
        chromium.arguments = ["--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1000,4000",
                              "--screenshot=\(shot.path)", copy.absoluteString]
        chromium.standardOutput = FileHandle.nullDevice
        chromium.standardError = FileHandle.nullDevice
        try chromium.run()
        let deadline = Date().addingTimeInterval(60)
        while chromium.isRunning && Date() < deadline { usleep(50_000) }
        if chromium.isRunning { chromium.terminate(); XCTFail("chromium did not finish in 60 s") }
        // Decoded by a PNG reader of our own in Python (zlib, the five filters): what the screen shows.
        let counts = try TestTools.python("""
        import sys, struct, zlib
        d = open(sys.argv[1], "rb").read()
        i, idat = 8, b""
        while i < len(d):
            n, = struct.unpack(">I", d[i:i+4]); t = d[i+4:i+8]
            if t == b"IHDR": w, h, depth, ct = struct.unpack(">IIBB", d[i+8:i+18])
            if t == b"IDAT": idat += d[i+8:i+8+n]
            i += 12 + n
        assert depth == 8 and ct in (2, 6), (depth, ct)
        bpp = 3 if ct == 2 else 4
        raw, stride, rows, prev, at = zlib.decompress(idat), w * bpp, [], bytearray(w * bpp), 0
        for y in range(h):
            f = raw[at]; line = bytearray(raw[at + 1:at + 1 + stride]); at += 1 + stride
            for x in range(stride):
                a = line[x - bpp] if x >= bpp else 0; b = prev[x]; c = prev[x - bpp] if x >= bpp else 0
                if f == 1: line[x] = (line[x] + a) & 255
                elif f == 2: line[x] = (line[x] + b) & 255
                elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
                elif f == 4:
                    p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            rows.append(line); prev = line
        colours = {}
        for line in rows:
            for x in range(0, stride, bpp):
                key = bytes(line[x:x + 3]); colours[key] = colours.get(key, 0) + 1
        palette = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
                   (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
        print(w * h - colours.get(b"\\xff\\xff\\xff", 0), " ".join(str(colours.get(bytes(p), 0)) for p in palette))
        """, [shot.path]).split(separator: " ").map { Int($0.trimmingCharacters(in: .whitespacesAndNewlines))! }
        XCTAssertGreaterThan(counts[0], 100_000, "the page looks blank")
        // The curves (train blue, validation orange, test green) and the latent map's ten digit colours.
        for (i, pixels) in counts.dropFirst().enumerated() {
            XCTAssertGreaterThan(pixels, 40, "colour \(i) of the pictures is not on the screen: an image did not load")
        }
    }

    func testWithoutItsDataTheReportSaysSoAndANonRunIsAnError() throws {
        let root = Launcher.temporaryDirectory("report-nodata")
        defer { try? FileManager.default.removeItem(at: root) }
        let run = root.appendingPathComponent("run")
        XCTAssertEqual(try Launcher.run(smallRun + ["--set", "train.max_steps=10", "--threads", "1", "--run-dir", run.path]).status, 0)
        let r = try Launcher.run(["report", run.path, "--data", root.appendingPathComponent("moved.h5").path, "--out", root.appendingPathComponent("out").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.hasSuffix("(3 pictures)\n"), r.stdout)   // the curves: loss, and the VAE's two terms
        let html = try String(contentsOf: root.appendingPathComponent("out/index.html"), encoding: .utf8)
        XCTAssertTrue(html.contains("is not here"), html)
        // data.labels names the train rows' labels for the map; a wrong one is refused as training starts.
        let labelled = root.appendingPathComponent("labelled")
        XCTAssertEqual(try Launcher.run(smallRun + ["--set", "train.max_steps=5", "--set", "data.labels=train/labels", "--run-dir", labelled.path]).status, 0)
        XCTAssertEqual(try Launcher.run(["report", labelled.path]).status, 0)
        XCTAssertTrue(try String(contentsOf: labelled.appendingPathComponent("report/index.html"), encoding: .utf8).contains("coloured by train/labels"))
        let wrong = try Launcher.run(smallRun + ["--set", "data.labels=test/labels", "--run-dir", root.appendingPathComponent("wrong").path])
        XCTAssertEqual(wrong.status, 1)
        XCTAssertTrue(wrong.stderr.contains("key 'data.labels': 'test/labels' has shape [297]; expected one label per train row, [1500]"), wrong.stderr)
        let bad = try Launcher.run(["report", root.path])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains("run directory '\(root.path)': no config.yaml"), bad.stderr)
    }
}
