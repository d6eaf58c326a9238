"""`make bench`: retrieval quality and speed of PicTrace on real photos, against the seed's method (issue 4)."""
