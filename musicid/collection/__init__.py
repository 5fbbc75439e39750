"""Stage 3, labelled collections: a composer-labelled folder's tracks, their works (every movement
and version of a piece on one side of a split) and held-out split (`dataset`), and what a collection's own
catalogue says of each track -- collection, genre, work (`catalogue`). Imports the foundation, `io` and
`features`.
"""
