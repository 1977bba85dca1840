"""The pipeline: job → validated extensions → results → record patch + units."""
