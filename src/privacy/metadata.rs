//! Photo metadata stripping (EXIF, GPS, XMP, comments) for JPEG and PNG.
