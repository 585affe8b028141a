// protocol.save_npy / load_npy: .npy format 1.0, little-endian float32, C order.
import Foundation

public enum Npy {
    /// The float32 array of an .npy file and its shape; throws when it is not '<f4', C order, version 1.0.
    public static func read(_ url: URL) throws -> (values: [Float], shape: [Int]) {
        let data = try Data(contentsOf: url)
        guard data.count >= 10, data.prefix(6) == Data([0x93] + Array("NUMPY".utf8)), data[6] == 1 else {
            throw ProtocolError.invalid("\(url.lastPathComponent): not an .npy 1.0 file")
        }
        let headerLen = Int(data[8]) | (Int(data[9]) << 8)
        guard let header = String(data: data.subdata(in: 10..<(10 + headerLen)), encoding: .ascii),
              header.contains("'descr': '<f4'"), header.contains("'fortran_order': False"),
              let open = header.range(of: "'shape': ("), let close = header[open.upperBound...].firstIndex(of: ")")
        else { throw ProtocolError.invalid("\(url.lastPathComponent): not a little-endian float32 C-order array") }
        let shape = header[open.upperBound..<close].split(separator: ",")
            .compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let count = shape.reduce(1, *)
        let body = data.subdata(in: (10 + headerLen)..<data.count)
        guard body.count == count * 4 else {
            throw ProtocolError.invalid("\(url.lastPathComponent): \(body.count) data bytes for shape \(shape)")
        }
        let values: [Float] = body.withUnsafeBytes { raw in
            (0..<count).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        }
        return (values, shape)
    }

    /// Write `values` of `shape` as .npy 1.0 '<f4' (header padded to 64 bytes), atomically.
    public static func write(_ values: [Float], shape: [Int], to url: URL) throws {
        let dims = shape.count == 1 ? "\(shape[0])," : shape.map(String.init).joined(separator: ", ")
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(dims)), }"
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var data = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
        let len = UInt16(header.utf8.count)
        data.append(contentsOf: [UInt8(len & 0xff), UInt8(len >> 8)])
        data.append(contentsOf: Array(header.utf8))
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
        try atomicWrite(data, to: url)
    }
}
