"""The analysts' dashboard: Plotly figure builders, pages, routes and the login."""
