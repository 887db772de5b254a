# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The eventIDs of a dedupe window, held in C in at most 24 bytes each once a bucket holds a few thousand (Cython).

`processors/dedupe.py` says what the window decides; this module holds its IDs for the processor's hot path
(`IdWindow.first_seen`, once per record) and its restore (`IdWindow.add`, once per changelog record). An
eventID is kept as a 128-bit key beside the 64-bit digest of its first record's content:

* Key. A GUID (36 characters: hex digits in either case, dashes at 8, 13, 18 and 23; the form validation
  requires of every eventID a processor sees) is its 16 bytes: exact, since case carries nothing in hex.
  Any other eventID is the 128-bit BLAKE2b digest of its lower-cased UTF-8 text. Two distinct such IDs share
  a key only if BLAKE2b-128 collides: by chance about n^2 / 2^129 for n of them in a window (1e-23 for a day
  of 35 million), on purpose 2^64 hashes of work; even then a record is dropped as a copy only if its
  content digest matches too, and is otherwise a conflict, dead-lettered and counted, as a forged record
  under a real eventID already is. (A GUID equal to such a digest is the same case: it lands, like any
  eventID, in the partition its own text picks, and meets the content check.) Both kinds of key then go
  through a two-round Feistel mix keyed per window from os.urandom: a bijection, so still exact, that
  spreads keys evenly over the index and the staging table (GUIDs that begin with a timestamp included)
  and keeps a producer from choosing IDs that pile up in one slot.
* Digest. `UNKNOWN` (2^64 - 1, for which `UNKNOWN_DIGEST` = -1 stands) marks an ID restored from a
  changelog record written before digests existed: any copy matches it. A real content digest equal to it
  (one chance in 2^64; on purpose, a 64-bit preimage of SHA-256) is taken as unknown too, so a later record
  under that eventID is a copy, never a conflict.

Per time bucket (a bucket is still forgotten whole: its memory is freed):

* A sealed run: the bucket's IDs sorted by key in one array, and an index of 2^bits + 1 offsets by the key's
  top bits, as wide as keeps a slot to 16 IDs or fewer and the run smallest. The index stands for the key's
  top byte from 8 bits on, its top two bytes from 16, so an entry is 24, 23 or 22 bytes: the key's low 64
  bits, the digest, the rest of the key's high 64 bits. A run of 2,200 IDs or more takes at most 23.5 bytes
  an ID, index included, from 262,000 at most 23 (22.6 at 416,000: 10 million in 24 buckets); a smaller one
  at most 24.8, and each run 8 bytes of padding.
* A staging table: open addressing over the IDs filed since the run was last merged, at most `staging`
  (65,536) of them at 32 bytes each. Full, it is sorted (heapsort: no quadratic case whatever the keys)
  and merged into the run from the back, in place, the run growing by realloc, so each entry of the run
  moves once a merge and no second copy of the run is made. When the window moves on to a newer bucket, the
  older buckets' tables are merged and freed: in steady state only the newest bucket has one.

Sorted runs rather than one hash table for the window: a hash table needs empty slots and a way to find a
bucket's IDs when it expires; a run needs neither, and does not store the key bytes its index stands for.
The price is a lookup per bucket. `first_seen` looks in the buckets in the order they were made (the dict
window's order, which decides the digest of an ID restored into two buckets), in groups of 32, each step for
the whole group before the next so that their cache misses overlap: the index slots, then the entries
around a position interpolated from the key (mixed keys spread evenly over a slot), then a gallop and a
binary search from there. `bench/dedupe.py` measures it against the dict window.

Memory comes from PyMem_RawMalloc (which tracemalloc sees); `IdWindow.resident_bytes` counts it.
"""

import math
import os
from enum import Enum
from hashlib import blake2b

from cpython.mem cimport PyMem_RawFree, PyMem_RawRealloc
from cpython.unicode cimport PyUnicode_1BYTE_KIND, PyUnicode_DATA, PyUnicode_GET_LENGTH, PyUnicode_KIND
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy, memmove, memset

UNKNOWN_DIGEST = -1
STAGING = 65_536

cdef uint64_t UNKNOWN = 0xFFFFFFFFFFFFFFFFULL
cdef extern from *:
    void __builtin_prefetch(const void* address) noexcept nogil

cdef enum:
    GROUP = 32  # buckets whose memory a lookup fetches at once
    MAX_PREFIX = 2
    PAD = 8  # bytes after a run's last entry: an entry's high-bits field is read as 8 bytes


class Seen(Enum):
    """What the window says of a record: the first with its eventID, a copy of it, or a conflicting one."""

    FIRST = "first"
    COPY = "copy"
    CONFLICT = "conflict"


cdef object IS_FIRST = Seen.FIRST
cdef object IS_COPY = Seen.COPY
cdef object IS_CONFLICT = Seen.CONFLICT

cdef uint8_t HEX[256]  # a character's hex value, or 0xFF
memset(HEX, 0xFF, 256)
for _value, _char in enumerate("0123456789abcdef"):
    HEX[ord(_char)] = HEX[ord(_char.upper())] = _value
cdef uint8_t DIGITS[32]  # where a GUID's 32 hex digits are
for _value, _char in enumerate([at for at in range(36) if at not in (8, 13, 18, 23)]):
    DIGITS[_value] = _char
del _value, _char


ctypedef struct Entry:  # a staged ID
    uint64_t hi
    uint64_t lo
    uint64_t digest

ctypedef struct Staging:
    Entry* entries  # `room` of them, the first `n` in use
    uint32_t* slots  # mask + 1 (a power of two, at least 2 * room): 0 is empty, else an entry's index + 1
    Py_ssize_t n
    Py_ssize_t room
    uint64_t mask

ctypedef struct Run:
    uint8_t* data  # n entries of 24 - prefix bytes, then PAD bytes; `size` bytes in all
    uint32_t* index  # 2^bits + 1 offsets into data, by the top `bits` bits of the key; NULL if bits is 0
    Py_ssize_t n
    size_t size
    int bits  # 0 to 24
    int prefix  # bytes of each key not stored, as the index stands for them: bits // 8, at most 2

ctypedef struct Bucket:
    int64_t number
    Run run
    Staging staging


cdef inline uint64_t mix64(uint64_t x) noexcept nogil:
    x ^= x >> 30
    x *= 0xBF58476D1CE4E5B9ULL
    x ^= x >> 27
    x *= 0x94D049BB133111EBULL
    return x ^ (x >> 31)


cdef inline uint64_t load_be(const uint8_t* p) noexcept nogil:
    cdef uint64_t v = 0
    cdef int i
    for i in range(8):
        v = (v << 8) | p[i]
    return v


cdef inline uint64_t load_le(const uint8_t* p) noexcept nogil:
    return (<uint64_t>p[0] | <uint64_t>p[1] << 8 | <uint64_t>p[2] << 16 | <uint64_t>p[3] << 24
            | <uint64_t>p[4] << 32 | <uint64_t>p[5] << 40 | <uint64_t>p[6] << 48 | <uint64_t>p[7] << 56)


cdef inline uint64_t load_word(const uint8_t* p) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return v


cdef inline void store_word(uint8_t* p, uint64_t v) noexcept nogil:
    memcpy(p, &v, 8)


cdef inline int entry_width(int prefix) noexcept nogil:
    return 24 - prefix


cdef inline uint64_t low_mask(int prefix) noexcept nogil:
    return 0xFFFFFFFFFFFFFFFFULL >> (8 * prefix)


cdef inline void store_entry(uint8_t* e, uint64_t hi, uint64_t lo, uint64_t digest, int prefix) noexcept nogil:
    """A run entry: lo and digest (8 bytes each, machine order), then the low 8 - prefix bytes of hi, little-endian."""
    cdef int i
    store_word(e, lo)
    store_word(e + 8, digest)
    for i in range(8 - prefix):
        e[16 + i] = <uint8_t>(hi >> (8 * i))


cdef inline uint64_t entry_hi(const Run* run, const uint8_t* e, Py_ssize_t slot) noexcept nogil:
    """The high 64 key bits of a run entry in index slot `slot`."""
    cdef uint64_t low = load_le(e + 16) & low_mask(run.prefix)
    if run.prefix == 0:
        return low
    return (<uint64_t>slot >> (run.bits - 8 * run.prefix) << (64 - 8 * run.prefix)) | low


cdef inline bint less(uint64_t a_hi, uint64_t a_lo, uint64_t b_hi, uint64_t b_lo) noexcept nogil:
    return a_hi < b_hi or (a_hi == b_hi and a_lo < b_lo)


cdef inline bint entry_less(const Entry* a, const Entry* b) noexcept nogil:
    return less(a.hi, a.lo, b.hi, b.lo)


cdef inline void sift_down(Entry* a, Py_ssize_t root, Py_ssize_t end) noexcept nogil:
    cdef Py_ssize_t child
    cdef Entry swap
    while True:
        child = 2 * root + 1
        if child >= end:
            return
        if child + 1 < end and entry_less(&a[child], &a[child + 1]):
            child += 1
        if not entry_less(&a[root], &a[child]):
            return
        swap = a[root]
        a[root] = a[child]
        a[child] = swap
        root = child


cdef void heap_sort(Entry* a, Py_ssize_t n) noexcept nogil:
    """Sort staged entries by key in place, in O(n log n) whatever the keys."""
    cdef Py_ssize_t i
    cdef Entry swap
    for i in range(n // 2 - 1, -1, -1):
        sift_down(a, i, n)
    for i in range(n - 1, 0, -1):
        swap = a[0]
        a[0] = a[i]
        a[i] = swap
        sift_down(a, 0, i)


cdef inline bint parse_guid(const uint8_t* s, uint64_t* hi, uint64_t* lo) noexcept nogil:
    """The 128 bits of a GUID's text (36 one-byte characters), or False if it is not one."""
    cdef uint64_t h = 0, l = 0
    cdef uint8_t bad = 0, v
    cdef int i
    if s[8] != 45 or s[13] != 45 or s[18] != 45 or s[23] != 45:  # '-'
        return False
    for i in range(16):
        v = HEX[s[DIGITS[i]]]
        bad |= v
        h = (h << 4) | (v & 15)
    for i in range(16, 32):
        v = HEX[s[DIGITS[i]]]
        bad |= v
        l = (l << 4) | (v & 15)
    if bad & 0xF0:
        return False
    hi[0] = h
    lo[0] = l
    return True


cdef inline uint64_t digest_of(object digest) except? 0:
    if not isinstance(digest, int):
        raise TypeError(f"a content digest is an int (got {type(digest).__name__})")
    try:
        return <uint64_t>digest
    except OverflowError:
        if digest == UNKNOWN_DIGEST:
            return UNKNOWN
        raise ValueError(f"a content digest is a 64-bit unsigned integer or {UNKNOWN_DIGEST} (got {digest!r})")


cdef inline int best_bits(Py_ssize_t n, int bits) noexcept nogil:
    """The index width for a run of n entries that had `bits`: no fewer (so that entries only narrow), at most
    16 entries a slot, and then the fewest bytes in all (an index of 16 bits or more saves 2 bytes an entry)."""
    cdef int best = bits, width
    cdef Py_ssize_t size, least = -1
    while (n >> best) > 16 and best < 24:
        best += 1
    for width in range(best, 25):
        size = (24 - min(MAX_PREFIX, width // 8)) * n + (4 * ((<Py_ssize_t>1 << width) + 1) if width else 0)
        if least < 0 or size < least:
            least = size
            bits = width
    return bits


cdef inline Py_ssize_t index_length(const Run* run) noexcept nogil:
    return ((<Py_ssize_t>1 << run.bits) + 1) if run.index != NULL else 0


cdef inline Py_ssize_t run_range(const Run* run, uint64_t hi, Py_ssize_t* a, Py_ssize_t* b) noexcept nogil:
    """Where key `hi` may be in a run: [a, b) by the index, and a first guess in it, interpolated from the key's
    next 32 bits (keys are mixed, so they spread evenly over a slot's range)."""
    cdef uint64_t below = hi << run.bits >> 32
    a[0] = 0
    b[0] = run.n
    if run.bits:
        a[0] = run.index[hi >> (64 - run.bits)]
        b[0] = run.index[(hi >> (64 - run.bits)) + 1]
    return a[0] + <Py_ssize_t>((below * <uint64_t>(b[0] - a[0])) >> 32)


cdef inline bint entry_below(const Run* run, Py_ssize_t at, uint64_t key_hi, uint64_t lo) noexcept nogil:
    """Whether entry `at` of a run is below the key (key_hi: the high bits without the prefix)."""
    cdef const uint8_t* e = run.data + at * entry_width(run.prefix)
    return less(load_le(e + 16) & low_mask(run.prefix), load_word(e), key_hi, lo)


cdef uint8_t* run_search(const Run* run, uint64_t hi, uint64_t lo, Py_ssize_t a, Py_ssize_t b,
                         Py_ssize_t guess) noexcept nogil:
    """The entry of key (hi, lo) in [a, b) of a run, or NULL: galloping from `guess`, then a binary search."""
    cdef uint64_t key_hi = hi & low_mask(run.prefix)
    cdef Py_ssize_t low = a, high = b, step = 1, probe, middle  # entries below `low` are below the key,
    cdef uint8_t* e                                              # those from `high` on are not
    if a >= b:
        return NULL
    if entry_below(run, guess, key_hi, lo):
        low = guess + 1
        probe = low
        while probe < high and entry_below(run, probe, key_hi, lo):
            low = probe + 1
            probe = low + step
            step <<= 1
        high = min(high, probe + 1)
    else:
        high = guess
        probe = guess - 1
        while probe >= low and not entry_below(run, probe, key_hi, lo):
            high = probe
            probe = high - step
            step <<= 1
        low = max(low, probe + 1)
    while low < high:
        middle = (low + high) >> 1
        if entry_below(run, middle, key_hi, lo):
            low = middle + 1
        else:
            high = middle
    if low == b:
        return NULL
    e = run.data + low * entry_width(run.prefix)
    if load_word(e) == lo and load_le(e + 16) & low_mask(run.prefix) == key_hi:
        return e
    return NULL


cdef uint8_t* run_find(const Run* run, uint64_t hi, uint64_t lo) noexcept nogil:
    """The entry of key (hi, lo) in a run, or NULL."""
    cdef Py_ssize_t a, b
    cdef Py_ssize_t guess = run_range(run, hi, &a, &b)
    return run_search(run, hi, lo, a, b, guess)


cdef void merge_back(Run* run, const Entry* staged, Py_ssize_t s) noexcept nogil:
    """Merge sorted staged entries (none of them in the run) into a run whose data has room for them all,
    from the back so that each run entry moves once; then shift the index past the staged entries."""
    cdef int width = entry_width(run.prefix)
    cdef Py_ssize_t i = run.n - 1, j = s - 1, k = run.n + s - 1, p = 0
    cdef uint8_t* e
    if run.bits:
        p = (<Py_ssize_t>1) << run.bits
    while j >= 0:
        if i >= 0:
            e = run.data + i * width
            while run.bits and run.index[p] > i:  # p: the slot of entry i, found going down
                p -= 1
            if less(staged[j].hi, staged[j].lo, entry_hi(run, e, p), load_word(e)):
                memmove(run.data + k * width, e, width)
                i -= 1
                k -= 1
                continue
        store_entry(run.data + k * width, staged[j].hi, staged[j].lo, staged[j].digest, run.prefix)
        j -= 1
        k -= 1
    if run.bits:
        j = 0
        for p in range(index_length(run)):
            while j < s and <Py_ssize_t>(staged[j].hi >> (64 - run.bits)) < p:
                j += 1
            run.index[p] += <uint32_t>j
    run.n += s


cdef Entry* staging_find(const Staging* st, uint64_t hi, uint64_t lo) noexcept nogil:
    """The staged entry of key (hi, lo), or NULL."""
    cdef uint64_t at = lo & st.mask
    cdef uint32_t slot
    if st.n == 0:
        return NULL
    while True:
        slot = st.slots[at]
        if slot == 0:
            return NULL
        if st.entries[slot - 1].hi == hi and st.entries[slot - 1].lo == lo:
            return &st.entries[slot - 1]
        at = (at + 1) & st.mask


cdef void staging_place(Staging* st, Py_ssize_t k) noexcept nogil:
    """Enter staged entry k in the first free slot from its key's (linear probing; keys are mixed)."""
    cdef uint64_t at = st.entries[k].lo & st.mask
    while st.slots[at]:
        at = (at + 1) & st.mask
    st.slots[at] = <uint32_t>(k + 1)


cdef class IdWindow:
    """The eventIDs one events partition has seen in the last `window_s` seconds, in buckets of `bucket_s`,
    each with the 64-bit digest of its first record's content; up to `staging` new IDs are staged per bucket
    before they are merged into its sorted run."""

    cdef readonly int64_t bucket_s
    cdef readonly int64_t span
    cdef Py_ssize_t staging_limit
    cdef Bucket* buckets  # in the order they were made
    cdef Py_ssize_t count
    cdef Py_ssize_t room
    cdef int64_t newest
    cdef Py_ssize_t size
    cdef Py_ssize_t held  # bytes allocated
    cdef uint64_t seed_hi
    cdef uint64_t seed_lo

    def __cinit__(self, window_s, bucket_s, staging=STAGING):
        if bucket_s <= 0 or window_s < bucket_s:
            raise ValueError(f"dedupe window {window_s}s must be at least one bucket ({bucket_s}s)")
        if not 1 <= staging <= 1 << 30:
            raise ValueError(f"a staging table holds 1 to 2^30 IDs (got {staging})")
        self.bucket_s = bucket_s
        self.span = math.ceil(window_s / bucket_s)
        self.staging_limit = staging
        self.newest = -1
        seed = os.urandom(16)
        self.seed_hi = load_be(seed)
        self.seed_lo = load_be(<const uint8_t*>seed + 8)

    def __dealloc__(self):
        cdef Py_ssize_t i
        for i in range(self.count):
            self._free_bucket(&self.buckets[i])
        PyMem_RawFree(self.buckets)

    def __len__(self):
        return self.size

    def resident_bytes(self):
        """Bytes of memory the IDs take: sorted runs and their indexes, staging tables, the bucket list."""
        return self.held

    def bucket_of(self, timestamp_s):
        """The bucket a record with this Kafka timestamp belongs to."""
        return int(timestamp_s // self.bucket_s)

    def first_seen(self, str event_id not None, int64_t bucket, digest=UNKNOWN_DIGEST):
        """Remember `event_id` with its content digest unless the window holds it: FIRST (keep the record),
        COPY (same content, or content unknown on either side: drop it) or CONFLICT (different content)."""
        cdef uint64_t hi, lo, seen
        cdef uint64_t d = digest_of(digest)
        self._key(event_id, &hi, &lo)
        cdef int64_t number = self._advance(bucket)
        if self._find(hi, lo, &seen):
            return IS_COPY if seen == d or seen == UNKNOWN or d == UNKNOWN else IS_CONFLICT
        self._stage(self._bucket(number), hi, lo, d)
        return IS_FIRST

    def add(self, int64_t bucket, list event_ids not None, list digests):
        """File the eventIDs of one changelog record under `bucket` (digests None: unknown) as the window first
        saw them; an ID that bucket holds already takes the digest given here."""
        cdef Py_ssize_t i, n = len(event_ids), at
        cdef int64_t number
        cdef uint64_t hi, lo, d = UNKNOWN
        cdef Bucket* b
        cdef Entry* staged
        cdef uint8_t* sealed
        if digests is not None and len(digests) != n:
            raise ValueError(f"a changelog record with {n} eventIDs and {len(digests)} digests")
        number = self._advance(bucket)
        if n == 0:
            return
        at = self._bucket(number)
        for i in range(n):
            event_id = event_ids[i]
            if not isinstance(event_id, str):
                raise TypeError(f"an eventID is a string (got {type(event_id).__name__})")
            self._key(event_id, &hi, &lo)
            if digests is not None:
                d = digest_of(digests[i])
            b = &self.buckets[at]
            sealed = run_find(&b.run, hi, lo)
            if sealed != NULL:
                store_word(sealed + 8, d)
                continue
            staged = staging_find(&b.staging, hi, lo)
            if staged != NULL:
                staged.digest = d
                continue
            self._stage(at, hi, lo, d)

    cdef int _key(self, str event_id, uint64_t* hi, uint64_t* lo) except -1:
        """The mixed 128-bit key of an eventID (see the module docstring)."""
        cdef uint64_t h, l
        if not (PyUnicode_GET_LENGTH(event_id) == 36 and PyUnicode_KIND(event_id) == PyUnicode_1BYTE_KIND
                and parse_guid(<const uint8_t*>PyUnicode_DATA(event_id), &h, &l)):
            text = blake2b(event_id.lower().encode("utf-8", "surrogatepass"), digest_size=16).digest()
            h = load_be(text)
            l = load_be(<const uint8_t*>text + 8)
        h ^= mix64(l ^ self.seed_hi)
        l ^= mix64(h ^ self.seed_lo)
        hi[0] = h
        lo[0] = l
        return 0

    cdef int64_t _advance(self, int64_t bucket) except? -2:
        """Move the window forward to `bucket` if it is newer (forgetting the buckets it leaves behind and
        sealing the others); the bucket to file an ID under."""
        cdef int64_t oldest
        cdef Py_ssize_t i, kept = 0
        if bucket <= self.newest:
            return max(bucket, self.newest - self.span + 1)
        self.newest = bucket
        oldest = bucket - self.span + 1
        for i in range(self.count):
            if self.buckets[i].number < oldest:
                self.size -= self.buckets[i].run.n + self.buckets[i].staging.n
                self._free_bucket(&self.buckets[i])
            else:
                self.buckets[kept] = self.buckets[i]
                kept += 1
        self.count = kept
        for i in range(self.count):
            self._seal(&self.buckets[i])
        return bucket

    cdef bint _find(self, uint64_t hi, uint64_t lo, uint64_t* digest) noexcept:
        """Whether a bucket holds the key (the first made, if more than one does), and its digest there.
        The buckets are looked at in groups, each step for all of a group before the next step, so that
        their memory is fetched in parallel: index slots, then the entries around the interpolated guess."""
        cdef Py_ssize_t first = 0, i, group, width
        cdef Py_ssize_t a[GROUP]
        cdef Py_ssize_t b[GROUP]
        cdef Py_ssize_t guess[GROUP]
        cdef Bucket* bucket
        cdef Entry* staged
        cdef uint8_t* sealed
        while first < self.count:
            group = min(GROUP, self.count - first)
            for i in range(group):
                bucket = &self.buckets[first + i]
                if bucket.run.bits:
                    __builtin_prefetch(&bucket.run.index[hi >> (64 - bucket.run.bits)])
                if bucket.staging.n:
                    __builtin_prefetch(&bucket.staging.slots[lo & bucket.staging.mask])
            for i in range(group):  # the entries within two of the guess: where the key nearly always is
                bucket = &self.buckets[first + i]
                guess[i] = run_range(&bucket.run, hi, &a[i], &b[i])
                if a[i] < b[i]:
                    width = entry_width(bucket.run.prefix)
                    __builtin_prefetch(bucket.run.data + max(a[i], guess[i] - 2) * width)
                    __builtin_prefetch(bucket.run.data + guess[i] * width)
                    __builtin_prefetch(bucket.run.data + (min(b[i], guess[i] + 3) * width - 1))
            for i in range(group):
                bucket = &self.buckets[first + i]
                staged = staging_find(&bucket.staging, hi, lo)
                if staged != NULL:
                    digest[0] = staged.digest
                    return True
                sealed = run_search(&bucket.run, hi, lo, a[i], b[i], guess[i])
                if sealed != NULL:
                    digest[0] = load_word(sealed + 8)
                    return True
            first += group
        return False

    cdef Py_ssize_t _bucket(self, int64_t number) except -1:
        """The position of bucket `number` in the list, made if it is new."""
        cdef Py_ssize_t i
        for i in range(self.count - 1, -1, -1):
            if self.buckets[i].number == number:
                return i
        if self.count == self.room:
            self.buckets = <Bucket*>self._resize(self.buckets, self.room * sizeof(Bucket),
                                                 (2 * self.room or 4) * sizeof(Bucket))
            self.room = 2 * self.room or 4
        memset(&self.buckets[self.count], 0, sizeof(Bucket))
        self.buckets[self.count].number = number
        self.count += 1
        return self.count - 1

    cdef int _stage(self, Py_ssize_t at, uint64_t hi, uint64_t lo, uint64_t digest) except -1:
        """Add an ID no bucket holds to bucket `at`'s staging table, merging the table into the run when full."""
        cdef Staging* st = &self.buckets[at].staging
        cdef Py_ssize_t room, k
        cdef uint64_t slots = 1
        if st.n == self.staging_limit:
            self._merge(&self.buckets[at])
        if st.n == st.room:
            room = min(self.staging_limit, max(16, 2 * st.room))
            while slots < 2 * <uint64_t>room:
                slots <<= 1
            st.entries = <Entry*>self._resize(st.entries, st.room * sizeof(Entry), room * sizeof(Entry))
            st.room = room
            st.slots = <uint32_t*>self._resize(st.slots, (st.mask + 1 if st.slots != NULL else 0) * sizeof(uint32_t),
                                               slots * sizeof(uint32_t))
            st.mask = slots - 1
            memset(st.slots, 0, slots * sizeof(uint32_t))
            for k in range(st.n):
                staging_place(st, k)
        st.entries[st.n].hi = hi
        st.entries[st.n].lo = lo
        st.entries[st.n].digest = digest
        staging_place(st, st.n)
        st.n += 1
        self.size += 1
        return 0

    cdef int _seal(self, Bucket* b) except -1:
        """Merge a bucket's staging table into its run and free the table."""
        if b.staging.n:
            self._merge(b)
        self._drop(b.staging.entries, b.staging.room * sizeof(Entry))
        self._drop(b.staging.slots, (b.staging.mask + 1) * sizeof(uint32_t))
        memset(&b.staging, 0, sizeof(Staging))
        return 0

    cdef int _merge(self, Bucket* b) except -1:
        """Merge the staged IDs into the run, sorted, leaving the staging table empty. Whatever it allocates
        comes first, so a MemoryError leaves both as they were."""
        cdef Run* run = &b.run
        cdef Staging* st = &b.staging
        cdef Py_ssize_t n = run.n + st.n
        cdef int bits = best_bits(n, run.bits)
        cdef size_t size
        if <uint64_t>n > 0xFFFFFFFFULL:
            raise OverflowError("a dedupe bucket holds at most 2^32 - 1 eventIDs")
        if bits != run.bits:
            self._reindex(run, bits)
        size = n * entry_width(run.prefix) + PAD
        run.data = <uint8_t*>self._resize(run.data, run.size, size)
        run.size = size
        heap_sort(st.entries, st.n)
        merge_back(run, st.entries, st.n)
        st.n = 0
        memset(st.slots, 0, (st.mask + 1) * sizeof(uint32_t))
        return 0

    cdef int _reindex(self, Run* run, int bits) except -1:
        """Give a run an index of `bits` bits; where that stands for more key bytes, narrow its entries in place."""
        cdef Py_ssize_t length = ((<Py_ssize_t>1) << bits) + 1, i, p = 0
        cdef uint32_t* index = <uint32_t*>self._resize(NULL, 0, length * sizeof(uint32_t))
        cdef int prefix = min(MAX_PREFIX, bits // 8)
        cdef int old_width = entry_width(run.prefix), width = entry_width(prefix)
        cdef uint64_t hi
        cdef uint8_t* e
        memset(index, 0, length * sizeof(uint32_t))
        for i in range(run.n):
            e = run.data + i * old_width
            while run.bits and run.index[p + 1] <= i:  # p: the old slot of entry i, found going up
                p += 1
            hi = entry_hi(run, e, p)
            if width != old_width:
                store_entry(run.data + i * width, hi, load_word(e), load_word(e + 8), prefix)
            index[(hi >> (64 - bits)) + 1] += 1
        for i in range(1, length):
            index[i] += index[i - 1]
        self._drop(run.index, index_length(run) * sizeof(uint32_t))
        run.index = index
        run.bits = bits
        run.prefix = prefix
        return 0

    cdef void* _resize(self, void* block, size_t old, size_t new) except NULL:
        cdef void* moved = PyMem_RawRealloc(block, new)
        if moved == NULL:
            raise MemoryError()
        self.held += <Py_ssize_t>new - <Py_ssize_t>old
        return moved

    cdef void _drop(self, void* block, size_t size) noexcept:
        if block != NULL:
            PyMem_RawFree(block)
            self.held -= size

    cdef void _free_bucket(self, Bucket* b) noexcept:
        self._drop(b.run.data, b.run.size)
        self._drop(b.run.index, index_length(&b.run) * sizeof(uint32_t))
        self._drop(b.staging.entries, b.staging.room * sizeof(Entry))
        self._drop(b.staging.slots, (b.staging.mask + 1) * sizeof(uint32_t))
        memset(b, 0, sizeof(Bucket))
