"""Deployment: conversion, verification, benchmarking, checkpoint import."""
