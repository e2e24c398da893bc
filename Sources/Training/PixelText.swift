// Text in pictures without a font library: a 3×5 pixel font of the digits, the letters (drawn in
// one case) and the punctuation that axis ticks and legends use, magnified by pixel replication.
import Storage

enum PixelText {
    /// Rows of 3 bits, top first (4: left column, 2: middle, 1: right).
    private static let glyphs: [Character: [UInt8]] = [
        "0": [7, 5, 5, 5, 7], "1": [2, 6, 2, 2, 7], "2": [7, 1, 7, 4, 7], "3": [7, 1, 3, 1, 7],
        "4": [5, 5, 7, 1, 1], "5": [7, 4, 7, 1, 7], "6": [7, 4, 7, 5, 7], "7": [7, 1, 2, 2, 2],
        "8": [7, 5, 7, 5, 7], "9": [7, 5, 7, 1, 7],
        "a": [2, 5, 7, 5, 5], "b": [6, 5, 6, 5, 6], "c": [3, 4, 4, 4, 3], "d": [6, 5, 5, 5, 6],
        "e": [7, 4, 6, 4, 7], "f": [7, 4, 6, 4, 4], "g": [3, 4, 5, 5, 3], "h": [5, 5, 7, 5, 5],
        "i": [7, 2, 2, 2, 7], "j": [1, 1, 1, 5, 2], "k": [5, 5, 6, 5, 5], "l": [4, 4, 4, 4, 7],
        "m": [5, 7, 7, 5, 5], "n": [6, 5, 5, 5, 5], "o": [2, 5, 5, 5, 2], "p": [6, 5, 6, 4, 4],
        "q": [2, 5, 5, 6, 3], "r": [6, 5, 6, 5, 5], "s": [3, 4, 2, 1, 6], "t": [7, 2, 2, 2, 2],
        "u": [5, 5, 5, 5, 7], "v": [5, 5, 5, 5, 2], "w": [5, 5, 7, 7, 5], "x": [5, 5, 2, 5, 5],
        "y": [5, 5, 2, 2, 2], "z": [7, 1, 2, 4, 7],
        "-": [0, 0, 7, 0, 0], "+": [0, 2, 7, 2, 0], ".": [0, 0, 0, 0, 2], ",": [0, 0, 0, 2, 4],
        ":": [0, 2, 0, 2, 0], "/": [1, 1, 2, 4, 4], "(": [1, 2, 2, 2, 1], ")": [4, 2, 2, 2, 4],
        "_": [0, 0, 0, 0, 7], "=": [0, 7, 0, 7, 0], "%": [5, 1, 2, 4, 5], " ": [0, 0, 0, 0, 0],
    ]

    /// Pixels one character advances at `scale` (the glyph's 3 columns and one of space).
    static func advance(scale: Int) -> Int { 4 * scale }
    static func height(scale: Int) -> Int { 5 * scale }
    static func width(_ text: String, scale: Int) -> Int { max(0, text.count * advance(scale: scale) - scale) }

    /// Writes `text` (upper case drawn as lower case; characters without a glyph leave a space)
    /// with its top-left at (x, y); returns the x just past it.
    @discardableResult
    static func draw(_ text: String, into image: inout PixelImage, x: Int, y: Int, scale: Int = 2,
                     colour: [UInt8] = [0, 0, 0]) -> Int {
        var left = x
        for character in text.lowercased() {
            if let rows = glyphs[character] {
                for (r, bits) in rows.enumerated() {
                    for c in 0..<3 where bits & (4 >> c) != 0 {
                        for dy in 0..<scale { for dx in 0..<scale { image.set(x: left + scale * c + dx, y: y + scale * r + dy, colour) } }
                    }
                }
            }
            left += advance(scale: scale)
        }
        return left
    }
}
