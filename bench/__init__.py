"""`make bench`: retrieval quality and speed of PicTrace on real photos (issues 4, 12, 14 and 29)."""
