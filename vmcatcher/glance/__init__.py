"""Publishing the cached images to an OpenStack Glance (``vmcatcher_glance``, docs/glance.md)."""
