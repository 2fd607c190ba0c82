"""Tools for developing the hub, shared by the tests and the benchmarks: a Hugging Face
Hub-compatible server, a tiny BERT base model and synthetic domains, and expert files
made the ways contributors make them. The hub itself never imports them."""
