import Hummingbird
// The API's bodies live in PaxosAPI (Foundation only), shared with the clients; exported so that
// every file of this module and every user of it sees them as before.
@_exported import PaxosAPI

// What the routes return: Hummingbird encodes them as JSON.
extension APIBody.Instance: ResponseEncodable {}
extension APIBody.Started: ResponseEncodable {}
extension APIBody.Done: ResponseEncodable {}
extension APIBody.Status: ResponseEncodable {}
extension APIBody.Health: ResponseEncodable {}
extension APIBody.ErrorEnvelope: ResponseEncodable {}
extension APIBody.KVWrite: ResponseEncodable {}
extension APIBody.CompareAndSetResult: ResponseEncodable {}
extension APIBody.Session: ResponseEncodable {}
extension APIBody.LogStatus: ResponseEncodable {}
extension APIBody.Members: ResponseEncodable {}
extension APIBody.MembershipResult: ResponseEncodable {}
