"""The licensing part of the REST API: ``serializers``, ``views`` (viewsets), ``urls``."""
