"""The index: S3 objects as the source of truth, and the views search reads them through.

Modules, each importing only those above it:
    layout      Entry and every key name under the index prefix (the only module that knows the S3 layout)
    store       IndexStore: entries, pointers, failures, change markers, model record; conditional writes
    packed      RowIds, KeyTable, Listing: ids, keys and version tokens packed into arrays (no object per row)
    rows        Row/Block/Loaded, the RowSource protocol, EntryRows (rows from the entries listing)
    segments    the segment format, SegmentStore, SegmentedView (rows from the segments: a RowSource)
    compaction  Compactor: change markers folded into segments, small segments merged
    alloc       glibc allocator tuning for the in-memory index
    memory      EmbeddingIndex: the matrices built from a RowSource, and the shortlist over them
    vectors     Amazon S3 Vectors: VectorIndex, the mirror of changes, reconcile, backfill
    backend     the ShortlistBackend interface, its two implementations, open_backend (the one factory)
"""
