"""The edge: filter chain, clusters, routes, the admin API and the HTTP edge."""
