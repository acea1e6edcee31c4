/// The state of each role, as an optional view of ``LogReplica/standing``: setting one makes it the
/// role; clearing one ends that role only if it is the current one. Mutating through a view moves
/// the state out of the enum and back, so it is never copied.
extension LogReplica {
    var preVote: PreVote? {
        get {
            guard case .preCandidate(let value) = standing else { return nil }
            return value
        }
        set {
            if let newValue {
                standing = .preCandidate(newValue)
            } else if case .preCandidate = standing {
                standing = .follower
            }
        }
        _modify {
            guard case .preCandidate(let held) = standing else {
                var none: PreVote?
                yield &none
                if let none { standing = .preCandidate(none) }
                return
            }
            var value: PreVote? = consume held
            standing = .follower
            defer { if let value { standing = .preCandidate(value) } }
            yield &value
        }
    }

    var candidacy: Candidacy? {
        get {
            guard case .candidate(let value) = standing else { return nil }
            return value
        }
        set {
            if let newValue {
                standing = .candidate(newValue)
            } else if case .candidate = standing {
                standing = .follower
            }
        }
        _modify {
            guard case .candidate(let held) = standing else {
                var none: Candidacy?
                yield &none
                if let none { standing = .candidate(none) }
                return
            }
            var value: Candidacy? = consume held
            standing = .follower
            defer { if let value { standing = .candidate(value) } }
            yield &value
        }
    }

    var leadership: Leadership? {
        get {
            guard case .leader(let value) = standing else { return nil }
            return value
        }
        set {
            if let newValue {
                standing = .leader(newValue)
            } else if case .leader = standing {
                standing = .follower
            }
        }
        _modify {
            guard case .leader(let held) = standing else {
                var none: Leadership?
                yield &none
                if let none { standing = .leader(none) }
                return
            }
            var value: Leadership? = consume held
            standing = .follower
            defer { if let value { standing = .leader(value) } }
            yield &value
        }
    }
}
