"""The firmware part of the REST API: ``serializers``, ``views`` (viewsets), ``urls``."""
