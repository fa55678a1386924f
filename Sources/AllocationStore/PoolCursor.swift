public import Addressing

/// How far one family of a pool is known to be full, so that an allocation finds the lowest free
/// address with a few point lookups instead of reading every allocation of the network (60,000
/// of them took 350 ms; issue 16).
///
/// The invariant, kept by the store inside its write transactions: every address of `family` the
/// pool allows, up to and including `through`, is allocated on the pool's network, except the
/// `holes` (addresses released since, or skipped because the caller asked to avoid them). A hole
/// may have been allocated again since (as a requested address, or from another pool of the
/// network) and is checked before it is handed out. Allocating only adds rows, so only a release
/// (a new hole) and a forced pool deletion (the network's cursors are dropped) change what the
/// cursor describes.
///
/// A cursor is a hint, never the authority: a choice is checked against the rows, UNIQUE
/// (network, address) stands behind it, and a walk that reaches the pool's end reads the whole
/// network before saying "exhausted". Were a cursor wrong (a vmctl older than cursors released an
/// address below `through`), that address would only be handed out once the rest is full.
public struct PoolCursor: Codable, Sendable, Equatable {
    public var family: IPAddress.Family
    public var through: IPAddress
    /// Sorted, all below `through`.
    public var holes: [IPAddress]

    /// More holes than this and the cursor is dropped (rebuilt by one full read next time): a
    /// release of thousands must not make every later allocation read thousands of holes.
    static let maximumHoles = 256
    /// Addresses looked up in one query while walking past `through`.
    static let batch = 32

    public init(family: IPAddress.Family, through: IPAddress, holes: [IPAddress] = []) {
        self.family = family
        self.through = through
        self.holes = holes.sorted()
    }

    /// The cursor a full read of the network gives once `chosen` is taken: the free addresses
    /// below it are those skipped as `avoiding`.
    init(layout: PoolLayout, chosen: IPAddress, allocated: Set<IPAddress>, avoiding: Set<IPAddress>) {
        self.init(family: chosen.family, through: chosen,
                  holes: avoiding.filter { $0.family == chosen.family && $0 < chosen && layout.allows($0) && !allocated.contains($0) }.sorted())
    }

    /// The lowest free address not in `avoiding` and the cursor once it is taken, or nil when the
    /// walk reached the end of the pool (the caller then reads the whole network).
    func next(in layout: PoolLayout, avoiding: Set<IPAddress>, on network: some NetworkAllocations) throws -> (IPAddress, PoolCursor)? {
        var cursor = self
        if !holes.isEmpty {
            let taken = try network.allocated(among: holes)
            cursor.holes.removeAll { taken.contains($0) }
            if let index = cursor.holes.firstIndex(where: { !avoiding.contains($0) }) {
                return (cursor.holes.remove(at: index), cursor)
            }
        }
        while true {
            var batch: [IPAddress] = []
            var after = cursor.through
            while batch.count < Self.batch, let address = layout.firstAllowed(family, after: after) {
                batch.append(address)
                after = address
            }
            guard !batch.isEmpty else { return nil }
            let taken = try network.allocated(among: batch)
            for address in batch {
                cursor.through = address
                if taken.contains(address) { continue }
                if avoiding.contains(address) {
                    cursor.holes.append(address)
                } else {
                    return (address, cursor)
                }
            }
        }
    }

    /// Itself, or nil when it holds more holes than it may keep.
    var bounded: PoolCursor? { holes.count > Self.maximumHoles ? nil : self }

    /// The cursor once `address` is released from the network: a hole if it lies below `through`
    /// and the pool allows it; nil when that makes too many holes (the cursor is dropped).
    public func releasing(_ address: IPAddress, in layout: PoolLayout) -> PoolCursor? {
        guard address.family == family, address <= through, layout.allows(address), !holes.contains(address) else { return self }
        guard holes.count < Self.maximumHoles else { return nil }
        var cursor = self
        cursor.holes.insert(address, at: holes.firstIndex { $0 > address } ?? holes.endIndex)
        return cursor
    }
}

/// The reads an allocation makes of its pool's network, inside the store's write transaction;
/// each is one indexed lookup but `everyAddress`.
public protocol NetworkAllocations {
    /// The allocation `mac` holds for `family` on the network, if any.
    func held(by mac: MACAddress, family: IPAddress.Family) throws -> Allocation?
    /// The allocation of `address` on the network, if any.
    func holder(of address: IPAddress) throws -> Allocation?
    /// Which of `addresses` are allocated on the network.
    func allocated(among addresses: [IPAddress]) throws -> Set<IPAddress>
    /// Every address allocated on the network.
    func everyAddress() throws -> Set<IPAddress>
}

extension AllocationRequest {
    /// The allocation to insert and the pool's cursor for its family afterwards (nil: none kept),
    /// given the cursor as the transaction read it: the one rule both stores apply. The address is
    /// the lowest the pool allows that is neither allocated on the network nor in `avoiding`, or
    /// exactly `requested`.
    public func choose(in pool: Pool, cursor: PoolCursor?, on network: some NetworkAllocations) throws -> (Allocation, PoolCursor?) {
        if let held = try network.held(by: mac, family: family) {
            throw StoreError.macHoldsAddress(mac, address: held)
        }
        let address: IPAddress
        var after = cursor
        if let requested {
            guard requested.family == family, pool.layout.allows(requested) else {
                throw StoreError.addressOutsidePool(requested, pool: pool.name)
            }
            if let holder = try network.holder(of: requested) {
                throw StoreError.addressTaken(requested, owner: holder.ownerName)
            }
            // Taken now: a hole or an address past `through` that the next walk finds allocated.
            address = requested
        } else if let cursor, cursor.family == family, let (free, advanced) = try cursor.next(in: pool.layout, avoiding: avoiding, on: network) {
            address = free
            after = advanced.bounded
        } else {
            let allocated = try network.everyAddress()
            guard let free = pool.layout.firstFree(family, allocated: allocated.union(avoiding)) else {
                throw StoreError.exhausted(pool: pool.name, family: family, size: pool.layout.size(of: family))
            }
            address = free
            after = PoolCursor(layout: pool.layout, chosen: free, allocated: allocated, avoiding: avoiding).bounded
        }
        let allocation = Allocation(pool: pool.name, network: pool.network, address: address,
                                    ownerUUID: ownerUUID, ownerName: ownerName, mac: mac, host: host)
        return (allocation, after)
    }
}
