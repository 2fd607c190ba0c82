"""The site's pages for mixtures, domains, experts and compositions. Views are thin:
permission, input, a service, output."""
