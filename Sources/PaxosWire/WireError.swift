/// Why bytes could not be decoded into a peer message. Every decoding problem is one of these;
/// the decoder never traps on input.
public struct WireError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: String, Hashable, Sendable {
        case truncated
        case unsupportedVersion
        case unknownMessageType
        case valueTooLarge
        case invalidField
        case trailingBytes
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "wire \(code.rawValue): \(message)" }
}
