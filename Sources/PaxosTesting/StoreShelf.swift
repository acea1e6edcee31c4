import Synchronization

/// The stores of a test cluster's nodes, by index: a node restarted on its index finds the store
/// it left (a lost disk is a store taken off the shelf).
final class StoreShelf<Store: Sendable>: Sendable {
    private let stores = Mutex<[Int: Store]>([:])
    private let make: @Sendable (Int) async throws -> Store

    init(_ make: @escaping @Sendable (Int) async throws -> Store) { self.make = make }

    /// Node `index`'s store, made on first use.
    func store(for index: Int) async throws -> Store {
        if let existing = stores.withLock({ $0[index] }) { return existing }
        let made = try await make(index)
        return stores.withLock { stores in
            if let raced = stores[index] { return raced }
            stores[index] = made
            return made
        }
    }

    subscript(index: Int) -> Store? { stores.withLock { $0[index] } }

    /// Forgets node `index`'s store (its next start makes a new one).
    func remove(_ index: Int) { _ = stores.withLock { $0.removeValue(forKey: index) } }
}
