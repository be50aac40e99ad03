"""Ingest: how a picture enters the catalog, and how its near copies are found.

    importer   files and folders, in worker processes          -> door
    door       the one door: prepare (decode, validate, hash, store) then record rows
    imaging    decode once: header checks, orientation, thumbnail, perceptual hashes
    storage    content-addressed originals, written atomically, never rewritten
    thumbs     the thumbnails the review page shows
    hashindex  all near pairs among a million hashes, and one lookup
    dedup      near-duplicate groups: plan, apply, undo, split

The crawl (curator/crawl) and scoring's --add come in through the same door.
"""
