"""The web layer: blueprint views, the JSON API, error pages. The only place that imports Flask."""
